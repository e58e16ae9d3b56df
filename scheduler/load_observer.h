// What the router sees of its load, kept for the planner: request arrivals
// with their prompt lengths, and each finished request's output length,
// time to first token and mean inter-token latency. Take() closes one
// planner interval and starts the next; totals() keeps counting across
// intervals, with how many requests met the latency targets.
//
// Thread-safe (the request path writes, the planner thread takes).
#ifndef TOKENFAB_SCHEDULER_LOAD_OBSERVER_H_
#define TOKENFAB_SCHEDULER_LOAD_OBSERVER_H_

#include <chrono>
#include <cstdint>
#include <optional>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "scheduler/planner.h"

namespace tokenfab {

class LoadObserver {
 public:
  using Clock = std::chrono::steady_clock;

  LoadObserver(double ttft_target_seconds, double itl_target_seconds,
               Clock::time_point start = Clock::now());

  // A request arrived with `prompt_tokens` (0 when it was refused before
  // its prompt was read); refused ones count as demand and as failed.
  void Arrived(int32_t prompt_tokens);
  void Refused();
  // A request ended. `completed`: it ran to a stop or its length; otherwise
  // it failed or was cancelled. `ttft`: none without a first token. `itl`:
  // its mean inter-token latency, none below two tokens.
  void Ended(bool completed, int32_t output_tokens, std::optional<double> ttft,
             std::optional<double> itl);

  // The interval since the last Take (or the start), then a new one.
  IntervalLoad Take(Clock::time_point now = Clock::now());

  struct Totals {
    int64_t arrived = 0;
    int64_t refused = 0;
    int64_t completed = 0;
    int64_t failed = 0;    // ended without completing (error, cancel)
    int64_t met_ttft = 0;  // of the completed
    int64_t met_itl = 0;
    int64_t met_both = 0;
  };
  Totals totals() const;

 private:
  const double ttft_target_, itl_target_;
  mutable absl::Mutex mu_;
  Clock::time_point interval_start_ ABSL_GUARDED_BY(mu_);
  int64_t arrivals_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t arrivals_with_prompt_ ABSL_GUARDED_BY(mu_) = 0;
  double prompt_tokens_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t completions_ ABSL_GUARDED_BY(mu_) = 0;
  double output_tokens_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t ttft_count_ ABSL_GUARDED_BY(mu_) = 0;
  double ttft_sum_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t itl_count_ ABSL_GUARDED_BY(mu_) = 0;
  double itl_sum_ ABSL_GUARDED_BY(mu_) = 0;
  Totals totals_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tokenfab

#endif  // TOKENFAB_SCHEDULER_LOAD_OBSERVER_H_
