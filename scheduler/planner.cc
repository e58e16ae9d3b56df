#include "scheduler/planner.h"

#include <algorithm>
#include <cmath>

#include "common/strings.h"

namespace tokenfab {

absl::StatusOr<std::unique_ptr<Planner>> Planner::Create(Profile profile, PlannerOptions o) {
  if (!(o.ttft_seconds > 0) || !(o.itl_seconds > 0) || !std::isfinite(o.ttft_seconds) ||
      !std::isfinite(o.itl_seconds)) {
    return absl::InvalidArgumentError("the planner's TTFT and ITL targets must be positive");
  }
  if (o.scale_down_intervals < 1 || o.scale_down_intervals > 1000) {
    return absl::InvalidArgumentError("scale_down_intervals must be 1 to 1000");
  }
  if (!(o.correction_weight > 0 && o.correction_weight <= 1) || !(o.max_correction >= 1) ||
      !std::isfinite(o.max_correction)) {
    return absl::InvalidArgumentError(
        "correction_weight must be in (0, 1] and max_correction at least 1");
  }
  auto rate = CreateLoadPredictor(o.predictor, o.moving_average_window);
  if (!rate.ok()) return rate.status();
  auto isl = CreateLoadPredictor(o.predictor, o.moving_average_window);
  auto osl = CreateLoadPredictor(o.predictor, o.moving_average_window);
  return std::unique_ptr<Planner>(new Planner(std::move(profile), std::move(o), std::move(*rate),
                                              std::move(*isl), std::move(*osl)));
}

Planner::Planner(Profile profile, PlannerOptions options, std::unique_ptr<LoadPredictor> rate,
                 std::unique_ptr<LoadPredictor> isl, std::unique_ptr<LoadPredictor> osl)
    : profile_(std::move(profile)),
      options_(std::move(options)),
      rate_(std::move(rate)),
      isl_(std::move(isl)),
      osl_(std::move(osl)) {}

absl::StatusOr<PlannerDecision> Planner::Step(const IntervalLoad& load) {
  if (!(load.seconds > 0) || !std::isfinite(load.seconds) || load.requests < 0) {
    return absl::InvalidArgumentError("an interval needs a positive length and a request count");
  }
  rate_->Observe(static_cast<double>(load.requests) / load.seconds);
  if (load.requests > 0 && load.mean_isl > 0) isl_->Observe(load.mean_isl);
  if (load.mean_osl > 0) osl_->Observe(load.mean_osl);

  // How far reality strayed from the model's last prediction.
  auto correct = [&](double* correction, std::optional<double> observed, double predicted) {
    if (!observed || !(*observed > 0) || !(predicted > 0)) return;
    const double ratio =
        std::clamp(*observed / predicted, 1 / options_.max_correction, options_.max_correction);
    *correction = std::clamp(
        (1 - options_.correction_weight) * *correction + options_.correction_weight * ratio,
        1 / options_.max_correction, options_.max_correction);
  };
  if (last_ && load.fleet_as_decided && load.finished >= options_.min_correction_samples) {
    correct(&ttft_correction_, load.observed_ttft, last_->predicted_ttft);
    correct(&itl_correction_, load.observed_itl, last_->predicted_itl);
  }

  PlannerDecision d;
  d.predicted_rate = rate_->Predict();
  d.predicted_isl = isl_->Predict();
  d.predicted_osl = osl_->Predict();
  d.ttft_correction = ttft_correction_;
  d.itl_correction = itl_correction_;
  if (d.predicted_rate <= 0 || d.predicted_isl < 1 || d.predicted_osl < 1) {
    d.prefill_workers = options_.aggregated ? 0 : 1;
    d.decode_workers = 1;
    d.binding = "no load yet";
  } else {
    d.sized_from_load = true;
    PlanRequest r;
    r.rate = d.predicted_rate;
    r.isl = static_cast<int32_t>(std::ceil(d.predicted_isl));
    r.osl = static_cast<int32_t>(std::ceil(d.predicted_osl));
    // If latency runs k times what the model said, plan for targets k times tighter.
    r.ttft_seconds = options_.ttft_seconds / ttft_correction_;
    r.itl_seconds = options_.itl_seconds / itl_correction_;
    absl::StatusOr<CapacityPlan> plan = PlanCapacity(profile_, r);
    bool uncorrected = false;
    if (!plan.ok() && (ttft_correction_ != 1 || itl_correction_ != 1)) {
      r.ttft_seconds = options_.ttft_seconds;
      r.itl_seconds = options_.itl_seconds;
      plan = PlanCapacity(profile_, r);
      uncorrected = true;
    }
    if (!plan.ok()) return plan.status();
    if (options_.aggregated && !plan->aggregated) {
      return absl::FailedPreconditionError(plan->aggregated_infeasible);
    }
    const DeploymentPlan& p = options_.aggregated ? *plan->aggregated : plan->disaggregated;
    d.prefill_workers = p.prefill_workers;
    d.decode_workers = p.decode_workers;
    d.decode_batch_cap = p.batch_cap;
    d.tokens_per_joule = p.tokens_per_joule;
    d.predicted_ttft = p.ttft_seconds;
    d.predicted_itl = p.itl_seconds;
    d.binding = uncorrected ? StrCat(p.binding, " (latency correction dropped: unreachable)")
                            : p.binding;
  }
  // The stabilization window: each pool is the largest of the sizes of the
  // last scale_down_intervals intervals, this one's included.
  sized_.emplace_back(d.prefill_workers, d.decode_workers);
  while (sized_.size() > static_cast<size_t>(options_.scale_down_intervals)) sized_.pop_front();
  for (const auto& [prefill, decode] : sized_) {
    d.prefill_workers = std::max(d.prefill_workers, prefill);
    d.decode_workers = std::max(d.decode_workers, decode);
  }
  last_ = d;
  return d;
}

}  // namespace tokenfab
