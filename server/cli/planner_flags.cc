#include "server/cli/planner_flags.h"

#include <cmath>
#include <cstdlib>

#include "common/mapped_file.h"
#include "common/strings.h"
#include "scheduler/capacity_plan.h"

namespace tokenfab {

void AddPlannerFlags(FlagSet& flags, PlannerFlags* p) {
  flags.AddString("planner-profile", &p->profile,
                  "hardware profile (tokenfab profile --out) that turns on the planner");
  flags.AddString("planner-interval", &p->interval,
                  "how often the planner decides (default 10s; 100ms to 1h)");
  flags.AddString("ttft-target", &p->ttft_target,
                  "time-to-first-token target the planner sizes for (default 2s)");
  flags.AddString("itl-target", &p->itl_target,
                  "inter-token latency target the planner sizes for (default 100ms)");
  flags.AddString("planner-predictor", &p->predictor,
                  "load predictor: holt (trend-aware, default) or moving_average");
  flags.AddString("planner-mode", &p->mode,
                  "disaggregated (prefill and decode pools, default) or aggregated");
  flags.AddBool("planner-recommend-only", &p->recommend_only,
                "only publish decisions; leave worker roles and standby alone");
  flags.AddInt("planner-scale-down-intervals", &p->scale_down_intervals,
               "scale-down window: each pool gets its largest size over the last N "
               "intervals (default 3)");
  flags.AddString("planner-webhook", &p->webhook,
                  "http://HOST[:PORT]/PATH to POST each new decision to (JSON, signed)");
  flags.AddString("planner-webhook-secret-file", &p->webhook_secret_file,
                  "file holding the webhook's HMAC-SHA256 key (else "
                  "$TOKENFAB_PLANNER_WEBHOOK_SECRET; else unsigned)");
}

absl::Status FinishPlannerFlags(const PlannerFlags& p, std::optional<Profile>* profile,
                                PlannerLoopOptions* o) {
  if (p.profile.empty()) {
    if (!p.webhook.empty()) {
      return absl::InvalidArgumentError("--planner-webhook needs the planner: --planner-profile");
    }
    return absl::OkStatus();
  }
  auto named = [](const char* flag, absl::StatusOr<double> v) -> absl::StatusOr<double> {
    if (!v.ok()) return absl::InvalidArgumentError(StrCat("--", flag, ": ", v.status().message()));
    return v;
  };
  auto interval = named("planner-interval", ParseDuration(p.interval));
  if (!interval.ok()) return interval.status();
  auto ttft = named("ttft-target", ParseDuration(p.ttft_target));
  if (!ttft.ok()) return ttft.status();
  auto itl = named("itl-target", ParseDuration(p.itl_target));
  if (!itl.ok()) return itl.status();
  if (!(*ttft > 0) || !(*itl > 0)) {
    return absl::InvalidArgumentError("--ttft-target and --itl-target must be positive");
  }
  if (p.mode != "disaggregated" && p.mode != "aggregated") {
    return absl::InvalidArgumentError(
        StrCat("--planner-mode must be disaggregated or aggregated, got '", p.mode, "'"));
  }
  o->interval = std::chrono::milliseconds(std::llround(*interval * 1000));
  o->act = !p.recommend_only;
  o->planner.ttft_seconds = *ttft;
  o->planner.itl_seconds = *itl;
  o->planner.predictor = p.predictor;
  o->planner.aggregated = p.mode == "aggregated";
  o->planner.scale_down_intervals = p.scale_down_intervals;
  if (!p.webhook.empty()) {
    WebhookOptions w;
    w.url = p.webhook;
    if (!p.webhook_secret_file.empty()) {
      auto secret = ReadFileToString(p.webhook_secret_file);
      if (!secret.ok()) {
        return absl::InvalidArgumentError(
            StrCat("--planner-webhook-secret-file: ", secret.status().message()));
      }
      w.secret = *secret;
      while (!w.secret.empty() && (w.secret.back() == '\n' || w.secret.back() == '\r')) {
        w.secret.pop_back();
      }
    } else if (const char* env = std::getenv("TOKENFAB_PLANNER_WEBHOOK_SECRET")) {
      w.secret = env;
    }
    o->webhook = std::move(w);
  }
  auto read = ReadProfile(p.profile);
  if (!read.ok()) return read.status();
  *profile = std::move(*read);
  return absl::OkStatus();
}

}  // namespace tokenfab
