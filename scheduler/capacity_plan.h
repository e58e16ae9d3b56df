// Offline capacity planning from a hardware profile: how many workers, how
// many kW and what cost per million output tokens a steady load needs to
// meet its TTFT and inter-token latency targets, disaggregated (prefill and
// decode pools) and aggregated (every worker does both) side by side.
//
// An analytic queueing model over the profile, not a simulation:
//  - prefill: one prompt at a time per prefill worker (compute-bound), so a
//    worker serves 1 / prefill(isl) prompts per second; the wait in its
//    queue is M/D/1's, rho * s / (2 (1 - rho)); TTFT = wait + prefill(isl)
//    + one decode step (the first token is the decode worker's).
//  - decode: at batch b and the mean context isl + osl / 2 a step takes
//    step(b); b must meet the ITL target, fit the KV cache and
//    max_num_seqs. Little's law sizes the pool: rate * osl * step(b) / b
//    workers. Among the batches that meet the targets it takes the one with
//    the most tokens per joule (the energy-aware choice).
//  - aggregated: a worker spends f = rate_w * prefill(isl) of its time on
//    prompts; decode steps get the rest, so ITL = step(b) / (1 - f), and a
//    prompt's chunks ride along decode steps: TTFT = wait +
//    prefill(isl) + chunks * step(b).
// Power: each worker at its phase's profiled watts for its busy share and
// idle watts for the rest. Cost: energy at the kWh price plus workers at
// the hourly price.
#ifndef TOKENFAB_SCHEDULER_CAPACITY_PLAN_H_
#define TOKENFAB_SCHEDULER_CAPACITY_PLAN_H_

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "scheduler/profile.h"

namespace tokenfab {

struct PlanRequest {
  double rate = 0;  // requests per second
  int32_t isl = 0;  // prompt tokens
  int32_t osl = 0;  // output tokens
  double ttft_seconds = 0;
  double itl_seconds = 0;
  double energy_usd_per_kwh = 0.12;
  double worker_usd_per_hour = 2.50;
  std::optional<double> power_budget_kw;
};

struct DeploymentPlan {
  int64_t prefill_workers = 0;  // 0 for aggregated
  int64_t decode_workers = 0;   // aggregated: every worker
  int64_t workers = 0;
  double decode_batch = 0;  // mean sequences per decode step
  int32_t batch_cap = 0;    // the operating point chosen (max sequences per step)
  double ttft_seconds = 0;  // what the model predicts
  double itl_seconds = 0;
  double kw = 0;
  double tokens_per_joule = 0;  // output tokens
  double usd_per_hour = 0;
  double usd_per_million_tokens = 0;
  std::string binding;  // which constraint set the worker count
};

struct CapacityPlan {
  DeploymentPlan disaggregated;
  std::optional<DeploymentPlan> aggregated;  // none when no aggregated fleet meets the targets
  std::string aggregated_infeasible;         // why, then
  double output_tokens_per_second = 0;
};

// InvalidArgument for inputs out of range; FailedPrecondition, saying
// which target and by how much, when no operating point of the profile
// meets the targets, or when the plan exceeds the power budget.
absl::StatusOr<CapacityPlan> PlanCapacity(const Profile& profile, const PlanRequest& request);

// "300ms", "2s", "1.5s", "250us", "1m" -> seconds. InvalidArgument otherwise.
absl::StatusOr<double> ParseDuration(const std::string& text);

}  // namespace tokenfab

#endif  // TOKENFAB_SCHEDULER_CAPACITY_PLAN_H_
