#include "server/cli/routing_flags.h"

#include "server/cli/engine_flags.h"

namespace tokenfab {

void AddRoutingFlags(FlagSet& flags, RoutingOptions* r, int32_t* worker_timeout_ms,
                     int32_t* max_prefill_queue) {
  flags.AddInt(
      "disagg-threshold", &r->disagg_threshold,
      "prefill on a prefill worker when the decode worker would compute more than this many "
      "prompt tokens (default 512; 0 turns disaggregation off)");
  flags.AddInt(
      "max-prefill-queue-tokens", max_prefill_queue,
      "prefill locally while the prefill pool has this many tokens queued (default 16384)");
  flags.AddFloat("request-weight", &r->request_weight,
                 "routing cost of one active request, in KV blocks (default 4)");
  flags.AddInt(
      "worker-timeout-ms", worker_timeout_ms,
      "drop a worker that has not reported for this long; its requests migrate (default 1500: with the 200 ms reports and checks, a silent worker is gone within 2 s)");
}

absl::Status FinishRoutingFlags(RoutingOptions* r, int32_t worker_timeout_ms,
                                int32_t max_prefill_queue) {
  if (absl::Status s = CheckRange("disagg-threshold", r->disagg_threshold, 0, 1 << 30); !s.ok())
    return s;
  if (absl::Status s = CheckRange("max-prefill-queue-tokens", max_prefill_queue, 0, 1 << 30);
      !s.ok())
    return s;
  if (absl::Status s = CheckRange("worker-timeout-ms", worker_timeout_ms, 100, 3600000); !s.ok())
    return s;
  if (!(r->request_weight >= 0 && r->request_weight <= 1e6)) {
    return absl::InvalidArgumentError("--request-weight must be between 0 and 1e6");
  }
  r->liveness = std::chrono::milliseconds(worker_timeout_ms);
  r->max_prefill_queue_tokens = max_prefill_queue;
  return absl::OkStatus();
}

}  // namespace tokenfab
