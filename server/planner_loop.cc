#include "server/planner_loop.h"

#include <cstdio>

#include "absl/time/clock.h"
#include "common/strings.h"
#include "nlohmann/json.hpp"
#include "server/metric_families.h"

namespace tokenfab {
namespace {

using Json = nlohmann::ordered_json;
using prometheus::MetricType;

Json DecisionJson(const PlannerDecision& d, bool aggregated) {
  return Json{{"prefill_workers", d.prefill_workers},
              {"decode_workers", d.decode_workers},
              {"workers", d.prefill_workers + d.decode_workers},
              {"mode", aggregated ? "aggregated" : "disaggregated"},
              {"decode_batch_cap", d.decode_batch_cap},
              {"expected_tokens_per_joule", d.tokens_per_joule},
              {"binding", d.binding},
              {"predicted",
               {{"requests_per_second", d.predicted_rate},
                {"prompt_tokens", d.predicted_isl},
                {"output_tokens", d.predicted_osl},
                {"ttft_seconds", d.predicted_ttft},
                {"itl_seconds", d.predicted_itl}}},
              {"latency_correction", {{"ttft", d.ttft_correction}, {"itl", d.itl_correction}}}};
}

bool SameFleet(const PlannerDecision& a, const PlannerDecision& b) {
  return a.prefill_workers == b.prefill_workers && a.decode_workers == b.decode_workers &&
         a.decode_batch_cap == b.decode_batch_cap;
}

}  // namespace

absl::StatusOr<std::unique_ptr<PlannerLoop>> PlannerLoop::Start(Profile profile,
                                                                PlannerLoopOptions options,
                                                                Cluster* cluster,
                                                                LoadObserver* load) {
  if (options.interval < std::chrono::milliseconds(100) ||
      options.interval > std::chrono::hours(1)) {
    return absl::InvalidArgumentError(StrCat(
        "--planner-interval must be between 100ms and 1h, got ", options.interval.count(), " ms"));
  }
  auto planner = Planner::Create(std::move(profile), options.planner);
  if (!planner.ok()) return planner.status();
  std::unique_ptr<PlannerWebhook> webhook;
  if (options.webhook) {
    auto w = PlannerWebhook::Create(*options.webhook);
    if (!w.ok()) return w.status();
    webhook = std::move(*w);
  }
  std::unique_ptr<PlannerLoop> loop(
      new PlannerLoop(std::move(*planner), std::move(options), cluster, load, std::move(webhook)));
  loop->thread_ = std::thread([raw = loop.get()] { raw->Run(); });
  return loop;
}

PlannerLoop::PlannerLoop(std::unique_ptr<Planner> planner, PlannerLoopOptions options,
                         Cluster* cluster, LoadObserver* load,
                         std::unique_ptr<PlannerWebhook> webhook)
    : planner_(std::move(planner)),
      options_(std::move(options)),
      cluster_(cluster),
      load_(load),
      webhook_(std::move(webhook)) {}

PlannerLoop::~PlannerLoop() { Stop(); }

void PlannerLoop::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void PlannerLoop::Run() {
  const absl::Duration interval = absl::FromChrono(options_.interval);
  load_->Take();  // the first interval starts now
  absl::Time next = absl::Now() + interval;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (mu_.AwaitWithDeadline(absl::Condition(&stop_), next)) return;
    }
    Step();
    next += interval;
    const absl::Time now = absl::Now();
    if (next < now) next = now + interval;  // fell behind: skip, do not burst
  }
}

void PlannerLoop::Step() {
  IntervalLoad observed = load_->Take();
  {
    absl::MutexLock lock(&mu_);
    observed.fleet_as_decided = !options_.act || fleet_.missing == 0;
  }
  absl::StatusOr<PlannerDecision> decision = planner_->Step(observed);
  FleetAssignment fleet;
  int64_t role_changes = 0, standby_changes = 0;
  // Until a decision is sized from a whole load (requests that finished,
  // so output lengths are known) the fleet stays as it attached: parking
  // it on a guess would pile the first requests onto one worker.
  if (decision.ok() && decision->sized_from_load) seen_load_ = true;
  if (decision.ok() && options_.act && seen_load_) {
    const std::vector<FleetMember> members = cluster_->Fleet();
    fleet = AssignFleet(members, decision->prefill_workers, decision->decode_workers,
                        options_.planner.aggregated);
    // Bring standby workers back and give new roles before parking any, so
    // the pools never dip below what they had.
    for (const FleetChange& c : fleet.changes) {
      if (c.role) role_changes += cluster_->SetRole(c.id, *c.role).ok();
      if (c.standby && !*c.standby) standby_changes += cluster_->SetStandby(c.id, false).ok();
    }
    for (const FleetChange& c : fleet.changes) {
      if (c.standby && *c.standby) standby_changes += cluster_->SetStandby(c.id, true).ok();
    }
    if (!fleet.changes.empty()) {
      std::fprintf(
          stderr,
          "tokenfab router: planner: %lld prefill + %lld decode wanted; fleet now %lld "
          "prefill, %lld decode, %lld standby (%lld role changes)%s\n",
          static_cast<long long>(decision->prefill_workers),
          static_cast<long long>(decision->decode_workers), static_cast<long long>(fleet.prefill),
          static_cast<long long>(fleet.decode), static_cast<long long>(fleet.standby),
          static_cast<long long>(role_changes),
          fleet.missing > 0 ? StrCat(", ", fleet.missing, " more workers needed").c_str() : "");
    }
  }
  std::string publish;
  {
    absl::MutexLock lock(&mu_);
    ++steps_;
    observed_ = observed;
    if (!decision.ok()) {
      ++errors_;
      if (last_error_ != decision.status().message()) {
        std::fprintf(stderr, "tokenfab router: planner: %s; the last decision stands\n",
                     std::string(decision.status().message()).c_str());
      }
      last_error_ = std::string(decision.status().message());
      return;
    }
    last_error_.clear();
    const bool changed = !decision_ || !SameFleet(*decision_, *decision);
    decision_ = *decision;
    decided_at_unix_ = absl::ToUnixSeconds(absl::Now());
    if (options_.act) fleet_ = fleet;
    role_changes_ += role_changes;
    standby_changes_ += standby_changes;
    if (changed) {
      ++new_decisions_;
      if (webhook_ != nullptr) {
        Json j = DecisionJson(*decision_, options_.planner.aggregated);
        j["decided_at"] = decided_at_unix_;
        j["decision"] = new_decisions_;
        publish = j.dump();
      }
    }
  }
  if (!publish.empty()) webhook_->Publish(std::move(publish));
}

std::string PlannerLoop::StatusJson() const {
  const LoadObserver::Totals t = load_->totals();
  absl::MutexLock lock(&mu_);
  Json j;
  j["object"] = "planner";
  j["interval_seconds"] = std::chrono::duration<double>(options_.interval).count();
  j["acts_on_fleet"] = options_.act;
  j["targets"] = {{"ttft_seconds", options_.planner.ttft_seconds},
                  {"itl_seconds", options_.planner.itl_seconds}};
  j["predictor"] = options_.planner.predictor;
  j["steps"] = steps_;
  j["decisions"] = new_decisions_;
  j["decided_at"] = decided_at_unix_;
  j["decision"] = decision_ ? DecisionJson(*decision_, options_.planner.aggregated) : Json();
  if (observed_) {
    Json o = {{"seconds", observed_->seconds},
              {"requests", observed_->requests},
              {"requests_per_second",
               observed_->seconds > 0 ? observed_->requests / observed_->seconds : 0.0},
              {"mean_prompt_tokens", observed_->mean_isl},
              {"mean_output_tokens", observed_->mean_osl}};
    o["mean_ttft_seconds"] = observed_->observed_ttft ? Json(*observed_->observed_ttft) : Json();
    o["mean_itl_seconds"] = observed_->observed_itl ? Json(*observed_->observed_itl) : Json();
    j["observed"] = std::move(o);
  } else {
    j["observed"] = Json();
  }
  j["fleet"] = {{"prefill", fleet_.prefill},     {"decode", fleet_.decode},
                {"standby", fleet_.standby},     {"missing", fleet_.missing},
                {"role_changes", role_changes_}, {"standby_changes", standby_changes_}};
  j["requests"] = {{"arrived", t.arrived},  {"refused", t.refused},   {"completed", t.completed},
                   {"failed", t.failed},    {"met_ttft", t.met_ttft}, {"met_itl", t.met_itl},
                   {"met_both", t.met_both}};
  j["error"] = last_error_.empty() ? Json() : Json(last_error_);
  return j.dump();
}

std::vector<prometheus::MetricFamily> PlannerLoop::Collect() const {
  const LoadObserver::Totals t = load_->totals();
  std::optional<PlannerDecision> d;
  FleetAssignment fleet;
  int64_t steps, errors, role_changes, standby_changes, decisions;
  {
    absl::MutexLock lock(&mu_);
    d = decision_;
    fleet = fleet_;
    steps = steps_;
    errors = errors_;
    role_changes = role_changes_;
    standby_changes = standby_changes_;
    decisions = new_decisions_;
  }
  std::vector<prometheus::MetricFamily> out;
  auto gauge = [&](const std::string& name, const std::string& help, double v) {
    out.push_back(MetricFamilyOf(name, help, MetricType::Gauge, {{{}, v}}));
  };
  auto counter = [&](const std::string& name, const std::string& help, double v) {
    out.push_back(MetricFamilyOf(name, help, MetricType::Counter, {{{}, v}}));
  };
  if (d) {
    const bool agg = options_.planner.aggregated;
    out.push_back(MetricFamilyOf(
        "tokenfab_planner_desired_workers",
        "Workers per role the planner says the load needs (autoscalers scale on this).",
        MetricType::Gauge,
        {{{{"role", "prefill"}}, static_cast<double>(agg ? 0 : d->prefill_workers)},
         {{{"role", "decode"}}, static_cast<double>(agg ? 0 : d->decode_workers)},
         {{{"role", "both"}}, static_cast<double>(agg ? d->decode_workers : 0)}}));
    gauge("tokenfab_planner_predicted_requests_per_second",
          "The arrival rate the planner predicts for the next interval.", d->predicted_rate);
    gauge("tokenfab_planner_predicted_prompt_tokens",
          "The mean prompt length the planner predicts.", d->predicted_isl);
    gauge("tokenfab_planner_predicted_output_tokens",
          "The mean output length the planner predicts.", d->predicted_osl);
    out.push_back(MetricFamilyOf(
        "tokenfab_planner_predicted_latency_seconds",
        "The TTFT and inter-token latency the capacity model predicts for the decision.",
        MetricType::Gauge,
        {{{{"kind", "ttft"}}, d->predicted_ttft}, {{{"kind", "itl"}}, d->predicted_itl}}));
    out.push_back(MetricFamilyOf(
        "tokenfab_planner_latency_correction",
        "Observed over predicted latency (smoothed) by which the targets are tightened.",
        MetricType::Gauge,
        {{{{"kind", "ttft"}}, d->ttft_correction}, {{{"kind", "itl"}}, d->itl_correction}}));
    gauge("tokenfab_planner_decode_batch_cap",
          "The energy-aware operating point: the decode batch with the most tokens per joule "
          "that meets the targets.",
          d->decode_batch_cap);
    gauge("tokenfab_planner_expected_tokens_per_joule",
          "Output tokens per joule the profile expects at the chosen operating point.",
          d->tokens_per_joule);
  }
  if (options_.act) {
    out.push_back(MetricFamilyOf("tokenfab_planner_fleet_workers",
                                 "Attached workers as the planner placed them, by state.",
                                 MetricType::Gauge,
                                 {{{{"state", "prefill"}}, static_cast<double>(fleet.prefill)},
                                  {{{"state", "decode"}}, static_cast<double>(fleet.decode)},
                                  {{{"state", "standby"}}, static_cast<double>(fleet.standby)}}));
    gauge("tokenfab_planner_missing_workers", "Workers the decision wants beyond those attached.",
          static_cast<double>(fleet.missing));
  }
  counter("tokenfab_planner_steps_total", "Planner intervals run.", static_cast<double>(steps));
  counter("tokenfab_planner_decisions_total", "Planner steps that changed the decision.",
          static_cast<double>(decisions));
  counter("tokenfab_planner_errors_total",
          "Planner steps with no feasible fleet (the last decision stood).",
          static_cast<double>(errors));
  counter("tokenfab_planner_role_changes_total", "Workers whose role the planner flipped.",
          static_cast<double>(role_changes));
  counter("tokenfab_planner_standby_changes_total",
          "Workers the planner put on standby or brought back.",
          static_cast<double>(standby_changes));
  out.push_back(MetricFamilyOf(
      "tokenfab_planner_requests_total",
      "Requests the planner observed, by outcome against the targets (met_both, missed, failed).",
      MetricType::Counter,
      {{{{"outcome", "met_both"}}, static_cast<double>(t.met_both)},
       {{{"outcome", "missed"}}, static_cast<double>(t.completed - t.met_both)},
       {{{"outcome", "failed"}}, static_cast<double>(t.failed + t.refused)}}));
  if (webhook_ != nullptr) {
    const WebhookStats w = webhook_->stats();
    out.push_back(MetricFamilyOf(
        "tokenfab_planner_webhook_total",
        "Planner webhook deliveries by outcome (delivered, failed_attempt, dropped, superseded).",
        MetricType::Counter,
        {{{{"outcome", "delivered"}}, static_cast<double>(w.delivered)},
         {{{"outcome", "failed_attempt"}}, static_cast<double>(w.failed_attempts)},
         {{{"outcome", "dropped"}}, static_cast<double>(w.dropped)},
         {{{"outcome", "superseded"}}, static_cast<double>(w.superseded)}}));
  }
  return out;
}

}  // namespace tokenfab
