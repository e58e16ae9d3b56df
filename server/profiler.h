// Measures a hardware profile (scheduler/profile.h) of one worker: the real
// engine on this machine, driven through its request path. Prefill: a
// prompt of N tokens alone, submit to first token, median of `repeats`.
// Decode: B sequences at a context of C tokens, the median of their pure
// decode steps. Watts from the worker's power meter over each measurement.
//
// Decode points share one prompt per context, so after the first sequence
// the rest hit the prefix cache: that saves prefill time; each sequence
// still attends over its whole context.
#ifndef TOKENFAB_SERVER_PROFILER_H_
#define TOKENFAB_SERVER_PROFILER_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "scheduler/profile.h"
#include "worker/engine/backend_factory.h"
#include "worker/model_loader.h"
#include "worker/power/power_meter.h"

namespace tokenfab {

struct ProfilerOptions {
  std::vector<int32_t> prefill_lengths = {32, 128, 512, 1024};
  std::vector<int32_t> decode_batches = {1, 2, 4, 8, 16, 32};
  std::vector<int32_t> decode_contexts = {128, 512, 1024};
  int32_t decode_steps = 8;  // pure decode steps measured per point
  int32_t repeats = 3;
  // The worker's device (cpu or cuda:N), threads, KV cache and batch limits.
  DeviceBackendOptions backend;
  PowerOptions power;
  std::string model_id;
  // Called after each point with a line saying what was measured.
  std::function<void(const std::string&)> progress;
};

absl::StatusOr<Profile> MeasureProfile(const LoadedModel& model, const ProfilerOptions& options);

}  // namespace tokenfab

#endif  // TOKENFAB_SERVER_PROFILER_H_
