#include "server/profiler.h"

#include <algorithm>
#include <atomic>
#include <chrono>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "server/loadgen/report.h"
#include "worker/engine/engine.h"
#include "worker/engine_energy.h"

namespace tokenfab {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

// Distinct prompts: `salt` changes the first token, so no two share a block.
std::vector<int32_t> Prompt(int32_t n, int32_t salt, int32_t vocab) {
  std::vector<int32_t> t(n);
  for (int32_t i = 0; i < n; ++i)
    t[i] = static_cast<int32_t>((i * 7919 + salt * 104729 + 13) % vocab);
  return t;
}

// Watts over a measurement: energy before and after, from the monitor.
class Window {
 public:
  explicit Window(EnergyMonitor& m) : m_(m), t0_(Clock::now()), e0_(m.ReadNow().joules) {}
  double Watts() {
    const double e = m_.ReadNow().joules;
    const double dt = Seconds(Clock::now() - t0_);
    return dt > 0 ? (e - e0_) / dt : 0.0;
  }

 private:
  EnergyMonitor& m_;
  Clock::time_point t0_;
  double e0_;
};

// Decode steps of exactly `batch` sequences, seen by the engine's step hook.
struct StepTap {
  absl::Mutex mu;
  int32_t batch ABSL_GUARDED_BY(mu) = 0;
  std::vector<double> seconds ABSL_GUARDED_BY(mu);
};

}  // namespace

absl::StatusOr<Profile> MeasureProfile(const LoadedModel& model, const ProfilerOptions& o) {
  if (o.prefill_lengths.empty() || o.decode_batches.empty() || o.decode_contexts.empty()) {
    return absl::InvalidArgumentError("every list of points must be non-empty");
  }
  const int32_t ctx = model.config.context_length;
  for (int32_t n : o.prefill_lengths) {
    if (n < 1 || n >= ctx) {
      return absl::InvalidArgumentError(
          StrCat("prefill length ", n, " must be between 1 and the context (", ctx, ") - 1"));
    }
  }
  for (int32_t c : o.decode_contexts) {
    if (c < 1 || c + o.decode_steps + 2 >= ctx) {
      return absl::InvalidArgumentError(
          StrCat("decode context ", c, " must leave room for the steps in the context ", ctx));
    }
  }
  for (int32_t b : o.decode_batches) {
    if (b < 1 || b > o.backend.scheduler.max_num_seqs) {
      return absl::InvalidArgumentError(StrCat("decode batch ", b,
                                               " must be between 1 and --max-num-seqs (",
                                               o.backend.scheduler.max_num_seqs, ")"));
    }
  }
  ASSIGN_OR_RETURN(DeviceBackend backend, MakeDeviceBackend(model, o.backend));
  const int32_t blocks = backend.backend->num_kv_blocks();
  const int32_t block_size = 16;
  const int32_t max_batch = *std::max_element(o.decode_batches.begin(), o.decode_batches.end());
  const int32_t max_context = *std::max_element(o.decode_contexts.begin(), o.decode_contexts.end());
  // Shared prompt blocks plus each sequence's own partial and new blocks.
  const int64_t needed = (max_context + block_size - 1) / block_size +
                         int64_t{max_batch} * ((o.decode_steps + 2) / block_size + 2);
  if (needed > blocks) {
    return absl::InvalidArgumentError(StrCat("the largest decode point needs about ", needed,
                                             " KV blocks; --kv-cache-mb gives ", blocks));
  }
  auto tap = std::make_shared<StepTap>();
  EngineOptions eo;
  eo.scheduler = o.backend.scheduler;
  eo.on_step = [tap](const StepRecord& r) {
    absl::MutexLock lock(&tap->mu);
    if (r.prefill_tokens == 0 && r.sequences == tap->batch) tap->seconds.push_back(r.seconds);
  };
  Engine engine(backend.backend.get(), eo);
  std::string fallback;
  ASSIGN_OR_RETURN(std::unique_ptr<EnergyMonitor> energy,
                   StartEnergyMonitor(engine, o.power, 1, &fallback));

  Profile p;
  p.model = o.model_id;
  p.architecture = model.config.arch_name;
  p.device = o.power.device;
  const loadgen::MachineInfo machine = loadgen::ReadMachineInfo();
  p.hardware = o.backend.device == "cpu"
                   ? StrCat(machine.cpu, ", ", o.backend.threads, " of ",
                            machine.hardware_threads, " threads")
                   : backend.description;
  p.power_source = std::string(energy->meter().source());
  p.measured_at = loadgen::UtcNow();
  p.threads = o.backend.threads;
  p.block_size = block_size;
  p.kv_blocks = blocks;
  p.max_num_seqs = o.backend.scheduler.max_num_seqs;
  p.max_batched_tokens = o.backend.scheduler.max_batched_tokens;
  {
    Window idle(*energy);
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    p.idle_watts = idle.Watts();
  }

  // Runs `requests` and waits until every one has finished; error if any failed.
  std::atomic<uint64_t> next_id{0};
  auto run = [&](const std::vector<std::vector<int32_t>>& prompts, int32_t max_tokens,
                 Clock::time_point* first_output) -> absl::Status {
    absl::Mutex mu;
    int32_t left = static_cast<int32_t>(prompts.size());
    std::string error;
    bool got_first = false;
    for (const auto& prompt : prompts) {
      internal::v1::WorkerRequest r;
      r.set_request_id(StrCat("profile-", next_id++));
      r.mutable_prompt_ids()->Assign(prompt.begin(), prompt.end());
      r.set_max_tokens(max_tokens);
      r.mutable_sampling()->set_temperature(0);
      RETURN_IF_ERROR(engine.Submit(std::move(r), [&](const internal::v1::WorkerOutput& out) {
        absl::MutexLock lock(&mu);
        if (!got_first && out.token_ids_size() > 0) {
          got_first = true;
          if (first_output != nullptr) *first_output = Clock::now();
        }
        if (out.finish() == internal::v1::WORKER_FINISH_NONE) return;
        if (out.finish() == internal::v1::WORKER_FINISH_ERROR) error = out.error();
        --left;
      }));
    }
    absl::MutexLock lock(&mu);
    mu.Await(absl::Condition(
        +[](int32_t* n) { return *n == 0; }, &left));
    if (!error.empty()) return absl::InternalError(StrCat("the engine failed: ", error));
    return absl::OkStatus();
  };

  int32_t salt = 1;
  for (int32_t n : o.prefill_lengths) {
    std::vector<double> times;
    Window w(*energy);
    for (int32_t i = 0; i < std::max(1, o.repeats); ++i) {
      const auto t0 = Clock::now();
      Clock::time_point first;
      RETURN_IF_ERROR(run({Prompt(n, salt++, model.config.vocab_size)}, 1, &first));
      times.push_back(Seconds(first - t0));
    }
    p.prefill.push_back({n, Median(times), w.Watts()});
    if (o.progress) {
      o.progress(StrCat("prefill ", n, " tokens: ", p.prefill.back().seconds, " s, ",
                        p.prefill.back().watts, " W"));
    }
  }
  for (int32_t b : o.decode_batches) {
    for (int32_t c : o.decode_contexts) {
      const std::vector<int32_t> prompt = Prompt(c, 1000 + c, model.config.vocab_size);
      // The shared prompt is computed once, outside the measurement.
      RETURN_IF_ERROR(run({prompt}, 1, nullptr));
      {
        absl::MutexLock lock(&tap->mu);
        tap->batch = b;
        tap->seconds.clear();
      }
      Window w(*energy);
      RETURN_IF_ERROR(
          run(std::vector<std::vector<int32_t>>(b, prompt), o.decode_steps + 1, nullptr));
      const double watts = w.Watts();
      std::vector<double> steps;
      {
        absl::MutexLock lock(&tap->mu);
        steps = tap->seconds;
        tap->batch = 0;
      }
      if (steps.empty()) {
        return absl::InternalError(
            StrCat("no decode step of ", b, " sequences ran at context ", c,
                   " (the batch never formed: raise --max-batched-tokens or --kv-cache-mb)"));
      }
      p.decode.push_back({b, c, Median(steps), watts});
      if (o.progress) {
        o.progress(StrCat("decode batch ", b, " context ", c, ": ", p.decode.back().step_seconds,
                          " s/step over ", steps.size(), " steps, ", watts, " W"));
      }
    }
  }
  energy.reset();
  return p;
}

}  // namespace tokenfab
