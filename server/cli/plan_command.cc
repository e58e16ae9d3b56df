// tokenfab plan: capacity planning from a hardware profile. For a steady
// load and latency targets, the workers per role, kW, tokens per joule and
// cost per million output tokens, disaggregated and aggregated side by side,
// with the constraint that binds (scheduler/capacity_plan.h has the model).
//
//   tokenfab plan --profile profile.json --rate R --isl A --osl B --ttft 2s --itl 100ms
//       [--energy-price 0.12] [--worker-hour-price 2.50] [--power-budget-kw K] [--json]
#include <cstdio>

#include "common/strings.h"
#include "nlohmann/json.hpp"
#include "scheduler/capacity_plan.h"
#include "server/cli/cli_util.h"
#include "server/cli/commands.h"

namespace tokenfab {
namespace {

nlohmann::ordered_json PlanJson(const DeploymentPlan& d) {
  return {{"prefill_workers", d.prefill_workers},
          {"decode_workers", d.decode_workers},
          {"workers", d.workers},
          {"decode_batch", d.decode_batch},
          {"batch_cap", d.batch_cap},
          {"ttft_seconds", d.ttft_seconds},
          {"itl_seconds", d.itl_seconds},
          {"kw", d.kw},
          {"tokens_per_joule", d.tokens_per_joule},
          {"usd_per_hour", d.usd_per_hour},
          {"usd_per_million_tokens", d.usd_per_million_tokens},
          {"binding", d.binding}};
}

}  // namespace

int RunPlan(const std::vector<std::string>& args) {
  std::string profile_path, ttft = "2s", itl = "100ms";
  float rate = 0, energy_price = 0.12f, worker_price = 2.50f, budget = 0;
  int32_t isl = 0, osl = 0;
  bool json = false;
  FlagSet flags("plan",
                "Capacity planning: workers, kW, tokens per joule and cost per million tokens for "
                "a load and latency targets, from a hardware profile (tokenfab profile).");
  flags.AddString("profile", &profile_path, "the hardware profile (JSON)", true);
  flags.AddFloat("rate", &rate, "requests per second (required)");
  flags.AddInt("isl", &isl, "prompt tokens per request (required)");
  flags.AddInt("osl", &osl, "output tokens per request (required)");
  flags.AddString("ttft", &ttft, "time-to-first-token target, e.g. 500ms, 2s (default 2s)");
  flags.AddString("itl", &itl, "inter-token latency target (default 100ms)");
  flags.AddFloat("energy-price", &energy_price, "USD per kWh (default 0.12)");
  flags.AddFloat("worker-hour-price", &worker_price, "USD per worker-hour (default 2.50)");
  flags.AddFloat("power-budget-kw", &budget, "refuse plans above this many kW (default: none)");
  flags.AddBool("json", &json, "print one JSON object");
  if (int rc = ParseFlagsOrExit(flags, "plan", args); rc >= 0) return rc;
  auto usage = [](const absl::Status& s) {
    ReportError("plan", s);
    return kExitUsage;
  };
  PlanRequest r;
  r.rate = rate;
  r.isl = isl;
  r.osl = osl;
  r.energy_usd_per_kwh = energy_price;
  r.worker_usd_per_hour = worker_price;
  if (budget != 0) r.power_budget_kw = budget;
  auto t = ParseDuration(ttft);
  if (!t.ok()) return usage(absl::InvalidArgumentError(StrCat("--ttft: ", t.status().message())));
  auto u = ParseDuration(itl);
  if (!u.ok()) return usage(absl::InvalidArgumentError(StrCat("--itl: ", u.status().message())));
  r.ttft_seconds = *t;
  r.itl_seconds = *u;
  if (rate <= 0 || isl <= 0 || osl <= 0) {
    return usage(absl::InvalidArgumentError("--rate, --isl and --osl are required and positive"));
  }
  auto profile = ReadProfile(profile_path);
  if (!profile.ok()) return ReportError("plan", profile.status());
  auto plan = PlanCapacity(*profile, r);
  if (!plan.ok()) {
    if (plan.status().code() == absl::StatusCode::kInvalidArgument) return usage(plan.status());
    return ReportError("plan", plan.status());
  }
  if (json) {
    nlohmann::ordered_json j = {
        {"profile",
         {{"model", profile->model},
          {"hardware", profile->hardware},
          {"device", profile->device},
          {"power_source", profile->power_source}}},
        {"load",
         {{"rate", r.rate},
          {"isl", r.isl},
          {"osl", r.osl},
          {"ttft_seconds", r.ttft_seconds},
          {"itl_seconds", r.itl_seconds},
          {"output_tokens_per_second", plan->output_tokens_per_second}}},
        {"disaggregated", PlanJson(plan->disaggregated)},
        {"aggregated", plan->aggregated ? PlanJson(*plan->aggregated) : nlohmann::ordered_json()}};
    if (!plan->aggregated) j["aggregated_infeasible"] = plan->aggregated_infeasible;
    std::printf("%s\n", j.dump().c_str());
    return 0;
  }
  const DeploymentPlan& d = plan->disaggregated;
  const DeploymentPlan* a = plan->aggregated ? &*plan->aggregated : nullptr;
  std::string out = StrCat("tokenfab plan: ", profile->model, " on ", profile->hardware, " (",
                           profile->device, ", watts from ", profile->power_source, ")\n");
  StrAppend(&out, "  load: ", Fixed(r.rate, 3), " requests/s, isl ", r.isl, ", osl ", r.osl, " (",
            Fixed(plan->output_tokens_per_second, 1), " output tokens/s); targets TTFT ",
            Fixed(r.ttft_seconds, 3), " s, ITL ", Fixed(r.itl_seconds, 3), " s\n\n");
  char line[256];
  auto row = [&](const char* name, const std::string& dv, const std::string& av) {
    std::snprintf(line, sizeof line, "  %-24s %-26s %s\n", name, dv.c_str(), av.c_str());
    out += line;
  };
  auto agg = [&](const std::function<std::string(const DeploymentPlan&)>& f) {
    return a ? f(*a) : std::string("-");
  };
  row("", "disaggregated", "aggregated");
  row("prefill workers", StrCat(d.prefill_workers), "-");
  row("decode workers", StrCat(d.decode_workers), "-");
  row("workers", StrCat(d.workers), agg([](const DeploymentPlan& x) { return StrCat(x.workers); }));
  row("decode batch (cap)", StrCat(Fixed(d.decode_batch, 1), " (", d.batch_cap, ")"),
      agg([](const DeploymentPlan& x) {
        return StrCat(Fixed(x.decode_batch, 1), " (", x.batch_cap, ")");
      }));
  row("TTFT (model)", StrCat(Fixed(d.ttft_seconds, 3), " s"),
      agg([](const DeploymentPlan& x) { return StrCat(Fixed(x.ttft_seconds, 3), " s"); }));
  row("ITL (model)", StrCat(Fixed(d.itl_seconds, 4), " s"),
      agg([](const DeploymentPlan& x) { return StrCat(Fixed(x.itl_seconds, 4), " s"); }));
  row("power", StrCat(Fixed(d.kw, 3), " kW"),
      agg([](const DeploymentPlan& x) { return StrCat(Fixed(x.kw, 3), " kW"); }));
  row("tokens per joule", Fixed(d.tokens_per_joule, 3),
      agg([](const DeploymentPlan& x) { return Fixed(x.tokens_per_joule, 3); }));
  row("cost per hour", StrCat("$", Fixed(d.usd_per_hour, 2)),
      agg([](const DeploymentPlan& x) { return StrCat("$", Fixed(x.usd_per_hour, 2)); }));
  row("cost per 1M tokens", StrCat("$", Fixed(d.usd_per_million_tokens, 2)),
      agg([](const DeploymentPlan& x) { return StrCat("$", Fixed(x.usd_per_million_tokens, 2)); }));
  StrAppend(&out, "\n  binds (disaggregated): ", d.binding, "\n");
  if (a) StrAppend(&out, "  binds (aggregated):    ", a->binding, "\n");
  if (!a)
    StrAppend(&out, "\n  aggregated: no fleet meets the targets (", plan->aggregated_infeasible,
              ")\n");
  std::printf("%s", out.c_str());
  return 0;
}

}  // namespace tokenfab
