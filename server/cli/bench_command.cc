// tokenfab bench: the load generator. Sends --requests prompts of exactly
// --isl tokens that each generate exactly --osl tokens (end-of-sequence
// ignored) to a running server over gRPC or OpenAI HTTP, closed-loop with
// --concurrency users or open-loop at --rate requests/s (Poisson), and
// reports throughput, TTFT, inter-token latency, request latency and goodput
// (see server/loadgen/stats.h for the definitions, which are aiperf's).
//
//   tokenfab bench --target grpc://HOST:PORT | http://HOST:PORT (grpcs://, https:// for TLS)
//       [--concurrency N | --rate R] --isl A --osl B --requests K [--json] ...
#include <cstdio>
#include <cstdlib>
#include <fstream>

#include "absl/strings/str_split.h"
#include "common/strings.h"
#include "server/cli/auth_flags.h"
#include "server/cli/cli_util.h"
#include "server/cli/commands.h"
#include "server/loadgen/driver.h"
#include "server/loadgen/load_client.h"
#include "server/loadgen/report.h"
#include "server/loadgen/stats.h"
#include "server/loadgen/worker_meters.h"
#include "server/loadgen/workload.h"
#include "worker/model_loader.h"

namespace tokenfab {
namespace {

constexpr int32_t kMaxInFlight = 1024;
constexpr int32_t kDefaultOpenLoopInFlight = 256;

std::string DefaultTokenizerPath() {
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  const char* home = std::getenv("HOME");
  const std::string cache = xdg && *xdg ? std::string(xdg) : StrCat(home ? home : "", "/.cache");
  return StrCat(cache, "/tokenfab/models/SmolLM2-135M-Instruct.Q4_1.gguf");
}

struct BenchFlags {
  std::string target;
  int32_t concurrency = 0;
  float rate = 0;
  int32_t isl = 128;
  int32_t osl = 128;
  int32_t requests = 64;
  bool json = false;
  std::string records;
  std::string model_id;
  float ttft_target_ms = 0;
  float itl_target_ms = 0;
  std::string tokenizer = DefaultTokenizerPath();
  std::optional<uint64_t> seed;
  int32_t warmup = 0;
  std::string extra_body;
  std::string metrics;  // comma-separated /metrics URLs of the workers' meters
};

absl::Status Validate(BenchFlags& f) {
  if (f.isl < 8) return absl::InvalidArgumentError(StrCat("--isl must be at least 8, got ", f.isl));
  if (f.osl < 1) return absl::InvalidArgumentError(StrCat("--osl must be positive, got ", f.osl));
  if (f.requests < 1) {
    return absl::InvalidArgumentError(StrCat("--requests must be positive, got ", f.requests));
  }
  if (f.warmup < 0) return absl::InvalidArgumentError("--warmup must not be negative");
  if (f.rate < 0) return absl::InvalidArgumentError("--rate must not be negative");
  if (f.concurrency < 0 || f.concurrency > kMaxInFlight) {
    return absl::InvalidArgumentError(
        StrCat("--concurrency must be between 1 and ", kMaxInFlight, ", got ", f.concurrency));
  }
  if (f.ttft_target_ms < 0 || f.itl_target_ms < 0) {
    return absl::InvalidArgumentError("latency targets must not be negative");
  }
  if (f.concurrency == 0) f.concurrency = f.rate > 0 ? kDefaultOpenLoopInFlight : 1;
  return absl::OkStatus();
}

}  // namespace

int RunBench(const std::vector<std::string>& args) {
  BenchFlags f;
  FlagSet flags("bench",
                "Load generator: send K requests of exactly A prompt tokens and B output tokens "
                "to a running tokenfab (or any OpenAI-compatible) server and report throughput, "
                "TTFT, inter-token latency and goodput.");
  flags.AddString("target", &f.target,
                  "grpc://HOST:PORT or http://HOST:PORT; grpcs:// or https:// for TLS", true);
  flags.AddInt("concurrency", &f.concurrency,
               "closed loop: requests in flight (default 1); with --rate: the in-flight cap "
               "(default 256)");
  flags.AddFloat("rate", &f.rate, "open loop: Poisson arrivals at R requests/s (0: closed loop)");
  flags.AddInt("isl", &f.isl, "prompt tokens per request (default 128)");
  flags.AddInt("osl", &f.osl, "output tokens per request, end-of-sequence ignored (default 128)");
  flags.AddInt("requests", &f.requests, "requests to measure (default 64)");
  flags.AddBool("json", &f.json, "print one JSON object instead of the text report");
  flags.AddString("records", &f.records,
                  "also write each measured request (start, TTFT, latency, tokens) as a JSON line "
                  "to this file");
  flags.AddString("model-id", &f.model_id,
                  "model id to request (default: the server's first, from ListModels or "
                  "/v1/models)");
  flags.AddFloat("ttft-target-ms", &f.ttft_target_ms, "goodput: TTFT target in ms (0: none)");
  flags.AddFloat("itl-target-ms", &f.itl_target_ms,
                 "goodput: inter-token latency target in ms (0: none)");
  flags.AddString("tokenizer", &f.tokenizer,
                  "model (GGUF or Hugging Face folder) whose tokenizer sizes the prompts "
                  "(default: the default SmolLM2 model)");
  flags.AddOptionalUint64("seed", &f.seed, "seed of the prompts and arrivals (default 0)");
  flags.AddInt("warmup", &f.warmup, "requests sent before measuring, not counted (default 0)");
  flags.AddString("extra-body", &f.extra_body,
                  "JSON object merged into each HTTP request body, e.g. '{\"logit_bias\": "
                  "{\"2\": -100}}'");
  flags.AddString("metrics", &f.metrics,
                  "the workers' /metrics URLs, comma-separated, whose energy meters the run's "
                  "tokens per joule come from (default: http://TARGET_HOST:9400/metrics, where "
                  "`tokenfab serve` has them; 'none' skips)");
  std::string api_key_file;
  AddApiKeyFlag(flags, &api_key_file, /*serving=*/false);
  std::string tls_ca_file;
  flags.AddString("tls-ca-file", &tls_ca_file,
                  "with a grpcs:// or https:// target: trust the PEM CA certificates in this "
                  "file (default: the system's)");
  if (int rc = ParseFlagsOrExit(flags, "bench", args); rc >= 0) return rc;
  auto usage_error = [](const absl::Status& s) {
    ReportError("bench", s);
    return kExitUsage;
  };
  if (absl::Status s = Validate(f); !s.ok()) return usage_error(s);
  absl::StatusOr<loadgen::Target> target = loadgen::ParseTarget(f.target);
  if (!target.ok()) return usage_error(target.status());
  absl::StatusOr<KeySet> api_key = LoadApiKeys(api_key_file);
  if (!api_key.ok()) return usage_error(api_key.status());
  auto client = loadgen::CreateLoadClient(
      *target, {.extra_body_json = f.extra_body, .api_key = *api_key, .tls_ca_file = tls_ca_file});
  if (!client.ok()) return usage_error(client.status());
  const uint64_t seed = f.seed.value_or(0);

  auto model = LoadModel(f.tokenizer, {.load_weights = false});
  if (!model.ok()) return ReportError("bench", model.status());
  auto prompts = loadgen::BuildPrompts(*(*model)->tokenizer, f.warmup + f.requests, f.isl, seed);
  if (!prompts.ok()) return ReportError("bench", prompts.status());

  std::string model_id = f.model_id;
  if (model_id.empty()) {
    absl::StatusOr<std::string> served = (*client)->ServedModelId();
    if (!served.ok()) return ReportError("bench", served.status());
    model_id = *served;
  }
  std::vector<loadgen::LoadRequest> warmup, measured;
  for (int32_t i = 0; i < f.warmup + f.requests; ++i) {
    loadgen::LoadRequest r{
        .prompt = std::move((*prompts)[i]), .max_tokens = f.osl, .model_id = model_id};
    (i < f.warmup ? warmup : measured).push_back(std::move(r));
  }

  loadgen::BenchConditions c;
  c.target = f.target;
  c.model_id = model_id;
  c.concurrency = f.concurrency;
  c.rate = f.rate;
  c.isl = f.isl;
  c.osl = f.osl;
  c.requests = f.requests;
  c.warmup = f.warmup;
  c.seed = seed;
  c.tokenizer = f.tokenizer;
  c.extra_body = f.extra_body;
  if (f.ttft_target_ms > 0) c.targets.ttft_ms = f.ttft_target_ms;
  if (f.itl_target_ms > 0) c.targets.itl_ms = f.itl_target_ms;

  if (!warmup.empty()) {
    std::fprintf(stderr, "tokenfab bench: %d warm-up requests\n", f.warmup);
    loadgen::RunLoad(**client, warmup, std::vector<double>(warmup.size(), 0.0), f.concurrency);
  }
  std::vector<std::string> meter_urls;
  if (f.metrics.empty()) {
    const bool v6 = target->host.find(':') != std::string::npos;
    meter_urls.push_back(StrCat("http://", v6 ? "[" : "", target->host, v6 ? "]" : "", ":9400/metrics"));
  } else if (f.metrics != "none") {
    for (absl::string_view u : absl::StrSplit(f.metrics, ',', absl::SkipEmpty())) {
      meter_urls.emplace_back(u);
    }
  }
  loadgen::EnergyReport energy;
  absl::StatusOr<loadgen::MeterReading> meters_before =
      meter_urls.empty() ? absl::NotFoundError("--metrics none")
                         : loadgen::ReadWorkerMeters(meter_urls);
  c.machine = loadgen::ReadMachineInfo();
  c.started_at = loadgen::UtcNow();
  std::fprintf(stderr, "tokenfab bench: %d requests to %s\n", f.requests, f.target.c_str());
  const std::vector<loadgen::RequestRecord> records = loadgen::RunLoad(
      **client, measured, loadgen::ArrivalTimes(f.requests, f.rate, seed), f.concurrency);
  c.load_average_at_end = loadgen::ReadMachineInfo().load_average;
  const loadgen::BenchSummary summary = loadgen::SummarizeRun(records, c.targets, f.isl, f.osl);
  if (meters_before.ok()) {
    absl::StatusOr<loadgen::MeterReading> after = loadgen::ReadWorkerMeters(meter_urls);
    if (!after.ok()) {
      energy.note = std::string(after.status().message());
    } else if (after->meters == 0) {
      energy.note = "the metrics pages have no tokenfab_energy_joules_total";
    } else {
      energy.energy = loadgen::EnergyOfRun(*meters_before, *after, summary.total_output_tokens);
    }
  } else {
    energy.note = StrCat("no worker meters: ", meters_before.status().message());
  }

  if (!f.records.empty()) {
    std::ofstream out(f.records);
    out << loadgen::FormatRecordsJsonLines(records);
    if (!out.flush()) {
      ReportError("bench", absl::UnavailableError(StrCat("cannot write ", f.records)));
    }
  }
  const std::string report = f.json ? loadgen::FormatReportJson(c, summary, energy)
                                    : loadgen::FormatReportText(c, summary, energy);
  std::printf("%s\n", report.c_str());
  if (summary.requests_completed == 0) {
    return ReportError(
        "bench", absl::UnavailableError(StrCat("every request failed",
                                               summary.sample_errors.empty()
                                                   ? std::string()
                                                   : StrCat(": ", summary.sample_errors.front()))));
  }
  return 0;
}

}  // namespace tokenfab
