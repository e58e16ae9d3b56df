// The planner's decision step, run by the router every interval: from the
// load observed over the interval (request rate, prompt and output
// lengths) it predicts the next interval's, sizes the prefill and decode
// pools with the capacity model over the hardware profile (at the decode
// batch with the most tokens per joule that meets the targets), and
// corrects the targets by how far observed latency strayed from what the
// model predicted for the previous decision.
//
// A correction that would make the targets unreachable on this profile is
// dropped for that step (the plan uses the targets as given, and its
// binding says so): the latency that far off comes from a backlog, which
// more workers clear.
//
// Scale-ups take effect at once. Scale-downs go through a stabilization
// window, as Kubernetes' HPA does: each pool gets the largest size sized
// over the last `scale_down_intervals` intervals, so a pool shrinks only to
// what every one of them wanted and a lull of a few intervals (Poisson
// arrivals counted over a short interval stray by 1 / sqrt(count)) or a
// prediction that undershoots does not make the fleet oscillate.
//
// Not thread-safe: one planner thread owns it.
#ifndef TOKENFAB_SCHEDULER_PLANNER_H_
#define TOKENFAB_SCHEDULER_PLANNER_H_

#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "scheduler/capacity_plan.h"
#include "scheduler/load_predictor.h"
#include "scheduler/profile.h"

namespace tokenfab {

struct PlannerOptions {
  double ttft_seconds = 2.0;
  double itl_seconds = 0.1;
  // Size an aggregated fleet (every worker prefills and decodes) instead
  // of prefill and decode pools; prefill_workers is then 0.
  bool aggregated = false;
  std::string predictor = "holt";     // or moving_average
  int32_t moving_average_window = 3;  // intervals
  int32_t scale_down_intervals = 3;  // the stabilization window
  // Observed / predicted latency is smoothed with this weight and kept
  // within [1 / max_correction, max_correction]; an interval with fewer
  // than `min_correction_samples` finished requests does not move it.
  double correction_weight = 0.5;
  double max_correction = 2.0;
  int64_t min_correction_samples = 8;
};

// What the router saw over one interval.
struct IntervalLoad {
  double seconds = 0;
  int64_t requests = 0;                 // arrivals
  double mean_isl = 0;                  // over those requests
  double mean_osl = 0;                  // over the requests that finished
  std::optional<double> observed_ttft;  // mean, when requests got a first token
  std::optional<double> observed_itl;   // mean, when tokens streamed
  int64_t finished = 0;                 // requests the latencies are over
  // False when the fleet was short of the last decision (workers missing):
  // latency then says the fleet was too small, not that the model is off,
  // so the correction is left alone.
  bool fleet_as_decided = true;
};

struct PlannerDecision {
  int64_t prefill_workers = 0;
  int64_t decode_workers = 0;
  double predicted_rate = 0;  // requests/s for the next interval
  double predicted_isl = 0;
  double predicted_osl = 0;
  int32_t decode_batch_cap = 0;  // the energy-aware operating point
  double tokens_per_joule = 0;   // what the model expects of it
  double predicted_ttft = 0;     // under the corrected targets
  double predicted_itl = 0;
  double ttft_correction = 1;  // observed / predicted latency, smoothed
  double itl_correction = 1;
  std::string binding;
  // False while the planner has not yet seen a whole load (arrivals with
  // prompt and output lengths): the decision is then the one-per-pool
  // minimum, not a sizing.
  bool sized_from_load = false;
};

class Planner {
 public:
  static absl::StatusOr<std::unique_ptr<Planner>> Create(Profile profile, PlannerOptions options);

  // One interval. With no load seen yet it keeps one worker in each pool.
  // FailedPrecondition when no fleet meets the (corrected) targets; the
  // last decision stands then.
  absl::StatusOr<PlannerDecision> Step(const IntervalLoad& load);
  const std::optional<PlannerDecision>& last() const { return last_; }

 private:
  Planner(Profile profile, PlannerOptions options, std::unique_ptr<LoadPredictor> rate,
          std::unique_ptr<LoadPredictor> isl, std::unique_ptr<LoadPredictor> osl);

  const Profile profile_;
  const PlannerOptions options_;
  std::unique_ptr<LoadPredictor> rate_, isl_, osl_;
  double ttft_correction_ = 1, itl_correction_ = 1;
  std::optional<PlannerDecision> last_;
  // The pool sizes sized over the last scale_down_intervals intervals
  // (before the window), newest last.
  std::deque<std::pair<int64_t, int64_t>> sized_;
};

}  // namespace tokenfab

#endif  // TOKENFAB_SCHEDULER_PLANNER_H_
