// tokenfab profile: measures a hardware profile of one worker on this
// machine (prefill time and watts against prompt length, decode step time
// and watts against batch size and context) and writes it as JSON for the
// planner, `tokenfab plan` and the simulated backend.
//
//   tokenfab profile [--model PATH] --out profile.json [--threads N]
//       [--prefill-lengths 32,128,512,1024] [--decode-batches 1,2,4,8,16,32]
//       [--decode-contexts 128,512,1024] [--decode-steps 8] [--repeats 3] ...
#include <cstdio>
#include <fstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "common/strings.h"
#include "common/thread_pool.h"
#include "server/cli/cli_util.h"
#include "server/cli/commands.h"
#include "server/cli/engine_flags.h"
#include "server/cli/power_flags.h"
#include "server/profiler.h"

namespace tokenfab {
namespace {


}  // namespace

int RunProfile(const std::vector<std::string>& args) {
  std::string model_path, model_id, out;
  std::string prefill = "32,128,512,1024", batches = "1,2,4,8,16,32", contexts = "128,512,1024";
  int32_t steps = 8, repeats = 3;
  EngineFlags engine;
  PowerFlags power;
  FlagSet flags("profile",
                "Measure a hardware profile of one worker (prefill and decode time and watts) "
                "for the planner, `tokenfab plan` and the simulated backend.");
  flags.AddString("model", &model_path,
                  "GGUF file or Hugging Face folder (default: the setup step's SmolLM2)");
  flags.AddString("model-id", &model_id,
                  "the model's name in the profile (default: the file name)");
  flags.AddString("out", &out, "where to write the profile (JSON)", true);
  flags.AddString("prefill-lengths", &prefill, "prompt lengths to time (default 32,128,512,1024)");
  flags.AddString("decode-batches", &batches, "decode batch sizes (default 1,2,4,8,16,32)");
  flags.AddString("decode-contexts", &contexts, "decode context lengths (default 128,512,1024)");
  flags.AddInt("decode-steps", &steps, "decode steps timed per point (default 8)");
  flags.AddInt("repeats", &repeats, "prefill runs per length, the median kept (default 3)");
  AddEngineFlags(flags, &engine, std::min(HardwareThreads(), 1024));
  AddPowerFlags(flags, &power);
  if (int rc = ParseFlagsOrExit(flags, "profile", args); rc >= 0) return rc;
  auto usage = [](const absl::Status& s) {
    ReportError("profile", s);
    return kExitUsage;
  };
  ProfilerOptions o;
  auto p = ParseIntList("prefill-lengths", prefill);
  if (!p.ok()) return usage(p.status());
  auto b = ParseIntList("decode-batches", batches);
  if (!b.ok()) return usage(b.status());
  auto c = ParseIntList("decode-contexts", contexts);
  if (!c.ok()) return usage(c.status());
  absl::Status check = CheckEngineFlags(engine);
  if (check.ok()) check = CheckPowerFlags(power);
  if (check.ok()) check = CheckRange("decode-steps", steps, 1, 10000);
  if (check.ok()) check = CheckRange("repeats", repeats, 1, 100);
  if (!check.ok()) return usage(check);
  if (model_path.empty()) model_path = DefaultModelPath();
  o.prefill_lengths = *p;
  o.decode_batches = *b;
  o.decode_contexts = *c;
  o.decode_steps = steps;
  o.repeats = repeats;
  o.backend = engine.backend(flags.WasGiven("kv-cache-mb"));
  o.power = power.options(engine.device);
  o.model_id = ModelIdFor(model_path, model_id);
  o.progress = [](const std::string& line) {
    std::fprintf(stderr, "tokenfab profile: %s\n", line.c_str());
  };

  auto model = LoadModel(model_path);
  if (!model.ok()) return ReportError("profile", model.status());
  auto profile = MeasureProfile(**model, o);
  if (!profile.ok()) return ReportError("profile", profile.status());
  std::ofstream file(out);
  file << ProfileToJson(*profile);
  if (!file.flush())
    return ReportError("profile", absl::UnavailableError(StrCat("cannot write ", out)));
  std::fprintf(
      stderr, "tokenfab profile: wrote %s (%zu prefill and %zu decode points, power from %s)\n",
      out.c_str(), profile->prefill.size(), profile->decode.size(), profile->power_source.c_str());
  return 0;
}

}  // namespace tokenfab
