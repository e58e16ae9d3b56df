#include "scheduler/capacity_plan.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "common/strings.h"

namespace tokenfab {
namespace {

constexpr int64_t kMaxWorkers = 1'000'000;

// M/D/1 mean wait in queue at utilisation rho for service time s.
double QueueWait(double rho, double s) { return rho * s / (2.0 * (1.0 - rho)); }

std::string Seconds(double s) {
  char buf[32];
  if (s < 1) {
    std::snprintf(buf, sizeof buf, "%.1f ms", s * 1e3);
  } else {
    std::snprintf(buf, sizeof buf, "%.2f s", s);
  }
  return buf;
}

// Fills power, tokens per joule and cost from the fleet's watts.
void Price(const PlanRequest& r, double watts, DeploymentPlan* d) {
  d->workers = d->prefill_workers + d->decode_workers;
  d->kw = watts / 1000.0;
  const double tokens_per_second = r.rate * r.osl;
  d->tokens_per_joule = watts > 0 ? tokens_per_second / watts : 0;
  d->usd_per_hour = d->kw * r.energy_usd_per_kwh + d->workers * r.worker_usd_per_hour;
  d->usd_per_million_tokens = d->usd_per_hour / (tokens_per_second * 3600.0) * 1e6;
}

// The decode batches to consider: 1 up to the largest measured batch,
// max_num_seqs and what the KV cache holds.
struct BatchLimits {
  int32_t max = 0;
  std::string why;  // what caps it
};

BatchLimits DecodeBatchLimit(const Profile& p, const PlanRequest& r) {
  const int64_t blocks_per_seq = (int64_t{r.isl} + r.osl + p.block_size - 1) / p.block_size;
  const int64_t kv_cap = p.kv_blocks / std::max<int64_t>(1, blocks_per_seq);
  const int32_t measured = p.DecodeBatches().back();
  BatchLimits l{measured, "the largest profiled batch"};
  if (p.max_num_seqs < l.max) l = {p.max_num_seqs, "max_num_seqs"};
  if (kv_cap < l.max) l = {static_cast<int32_t>(kv_cap), "KV cache capacity"};
  return l;
}

absl::StatusOr<DeploymentPlan> Disaggregated(const Profile& p, const PlanRequest& r) {
  const double context = r.isl + r.osl / 2.0;
  const BatchLimits limit = DecodeBatchLimit(p, r);
  if (limit.max < 1) {
    return absl::FailedPreconditionError(StrCat("one sequence of ", r.isl + r.osl,
                                                " tokens does not fit the profiled KV cache (",
                                                p.kv_blocks, " blocks of ", p.block_size, ")"));
  }
  // Decode: the batch with the most tokens per joule among those meeting ITL.
  int32_t best = 0;
  double best_tpj = -1;
  for (int32_t b = 1; b <= limit.max; ++b) {
    const double step = p.DecodeStepSeconds(b, static_cast<int32_t>(context));
    if (step > r.itl_seconds) continue;
    const double tpj = b / step / std::max(1e-9, p.DecodeWatts(b, static_cast<int32_t>(context)));
    if (tpj > best_tpj) best_tpj = tpj, best = b;
  }
  const double step1 = p.DecodeStepSeconds(1, static_cast<int32_t>(context));
  if (best == 0) {
    return absl::FailedPreconditionError(
        StrCat("no decode batch meets the ITL target ", Seconds(r.itl_seconds),
               ": one sequence at a ", static_cast<int32_t>(context),
               "-token context already takes ", Seconds(step1), " per token on this profile"));
  }
  DeploymentPlan d;
  d.batch_cap = best;
  const double step = p.DecodeStepSeconds(best, static_cast<int32_t>(context));
  // Little's law: sequences in decode = rate * osl * step; `best` per worker.
  const double in_decode = r.rate * r.osl * step;
  d.decode_workers = std::max<int64_t>(1, static_cast<int64_t>(std::ceil(in_decode / best - 1e-9)));
  d.decode_batch = in_decode / d.decode_workers;
  d.itl_seconds = p.DecodeStepSeconds(std::max(1, static_cast<int32_t>(std::ceil(d.decode_batch))),
                                      static_cast<int32_t>(context));
  // What stopped a larger batch: the cap, the ITL target, or nothing but
  // a lower tokens per joule.
  const std::string decode_binds =
      best == limit.max ? limit.why
      : p.DecodeStepSeconds(best + 1, static_cast<int32_t>(context)) > r.itl_seconds
          ? "ITL"
          : "tokens per joule";

  // Prefill: the fewest workers whose queue keeps TTFT under the target.
  const double s = p.PrefillSeconds(r.isl);
  if (s + d.itl_seconds >= r.ttft_seconds) {
    return absl::FailedPreconditionError(
        StrCat("no prefill fleet meets the TTFT target ", Seconds(r.ttft_seconds), ": a ", r.isl,
               "-token prompt alone takes ", Seconds(s), " to prefill plus ",
               Seconds(d.itl_seconds), " for the first token on this profile"));
  }
  const int64_t for_throughput = static_cast<int64_t>(std::floor(r.rate * s)) + 1;
  int64_t n = for_throughput;
  for (; n <= kMaxWorkers; ++n) {
    const double rho = r.rate * s / n;
    if (rho < 1 && QueueWait(rho, s) + s + d.itl_seconds <= r.ttft_seconds) break;
  }
  if (n > kMaxWorkers) return absl::FailedPreconditionError("over a million prefill workers");
  d.prefill_workers = n;
  const double rho = r.rate * s / n;
  d.ttft_seconds = QueueWait(rho, s) + s + d.itl_seconds;
  d.binding =
      StrCat("prefill: ", n > for_throughput ? "TTFT" : "throughput", "; decode: ", decode_binds);
  const double prefill_watts = n * (p.idle_watts + rho * (p.PrefillWatts(r.isl) - p.idle_watts));
  const double decode_watts =
      d.decode_workers *
      p.DecodeWatts(std::max(1, static_cast<int32_t>(std::round(d.decode_batch))),
                    static_cast<int32_t>(context));
  Price(r, prefill_watts + decode_watts, &d);
  return d;
}

absl::StatusOr<DeploymentPlan> Aggregated(const Profile& p, const PlanRequest& r) {
  const double context = r.isl + r.osl / 2.0;
  const BatchLimits limit = DecodeBatchLimit(p, r);
  const double s = p.PrefillSeconds(r.isl);
  const int32_t chunks = (r.isl + p.max_batched_tokens - 1) / p.max_batched_tokens;
  std::string last_failure = "no worker count up to a million meets both targets";
  // What ruled out the last smaller fleet: it binds for the one that fits.
  std::string binding = "throughput";
  for (int64_t n = std::max<int64_t>(1, static_cast<int64_t>(std::floor(r.rate * s)) + 1);
       n <= kMaxWorkers; n = n < 64 ? n + 1 : n + n / 16) {
    const double lambda = r.rate / n;
    const double f = lambda * s;  // share of time on prompts
    if (f >= 1) continue;
    // Sequences in decode per worker: b = lambda * osl * ITL, ITL = step(b) / (1 - f).
    double b = 1;
    for (int i = 0; i < 60; ++i) {
      const double itl = p.DecodeStepSeconds(std::max(1, static_cast<int32_t>(std::ceil(b))),
                                             static_cast<int32_t>(context)) /
                         (1 - f);
      b = std::max(1.0, lambda * r.osl * itl);
    }
    if (b > limit.max) {
      last_failure = StrCat("its decode batch would exceed ", limit.why);
      binding = limit.why;
      continue;
    }
    const int32_t bi = std::max(1, static_cast<int32_t>(std::ceil(b)));
    const double step = p.DecodeStepSeconds(bi, static_cast<int32_t>(context));
    const double itl = step / (1 - f);
    const double ttft = QueueWait(f, s) + s + chunks * step;
    if (itl > r.itl_seconds) {
      last_failure = StrCat("ITL ", Seconds(itl), " over the target");
      binding = "ITL";
      continue;
    }
    if (ttft > r.ttft_seconds) {
      last_failure = StrCat("TTFT ", Seconds(ttft), " over the target");
      binding = "TTFT";
      continue;
    }
    DeploymentPlan d;
    d.decode_workers = n;
    d.decode_batch = b;
    d.batch_cap = bi;
    d.ttft_seconds = ttft;
    d.itl_seconds = itl;
    d.binding = binding;
    const double watts = n * (f * p.PrefillWatts(r.isl) +
                              (1 - f) * p.DecodeWatts(bi, static_cast<int32_t>(context)));
    Price(r, watts, &d);
    return d;
  }
  return absl::FailedPreconditionError(last_failure);
}

}  // namespace

absl::StatusOr<CapacityPlan> PlanCapacity(const Profile& p, const PlanRequest& r) {
  if (!std::isfinite(r.rate) || r.rate <= 0 || r.rate > 1e7) {
    return absl::InvalidArgumentError(
        StrCat("--rate must be between 0 and 1e7 requests/s, got ", r.rate));
  }
  if (r.isl < 1 || r.isl > 10'000'000 || r.osl < 1 || r.osl > 10'000'000) {
    return absl::InvalidArgumentError("--isl and --osl must be positive token counts");
  }
  for (auto [name, v] :
       {std::pair<const char*, double>{"--ttft", r.ttft_seconds}, {"--itl", r.itl_seconds}}) {
    if (!std::isfinite(v) || v <= 0)
      return absl::InvalidArgumentError(StrCat(name, " must be positive"));
  }
  if (!std::isfinite(r.energy_usd_per_kwh) || r.energy_usd_per_kwh < 0 ||
      !std::isfinite(r.worker_usd_per_hour) || r.worker_usd_per_hour < 0) {
    return absl::InvalidArgumentError("prices must be numbers >= 0");
  }
  if (r.power_budget_kw && (!std::isfinite(*r.power_budget_kw) || *r.power_budget_kw <= 0)) {
    return absl::InvalidArgumentError("--power-budget-kw must be positive");
  }
  CapacityPlan plan;
  plan.output_tokens_per_second = r.rate * r.osl;
  absl::StatusOr<DeploymentPlan> d = Disaggregated(p, r);
  if (!d.ok()) return d.status();
  plan.disaggregated = *d;
  absl::StatusOr<DeploymentPlan> a = Aggregated(p, r);
  if (a.ok()) {
    plan.aggregated = *a;
  } else {
    plan.aggregated_infeasible = std::string(a.status().message());
  }
  if (r.power_budget_kw) {
    const double need = plan.aggregated ? std::min(plan.disaggregated.kw, plan.aggregated->kw)
                                        : plan.disaggregated.kw;
    if (need > *r.power_budget_kw) {
      return absl::FailedPreconditionError(StrCat("the load needs ", need,
                                                  " kW at least, over the power budget of ",
                                                  *r.power_budget_kw, " kW"));
    }
  }
  return plan;
}

absl::StatusOr<double> ParseDuration(const std::string& text) {
  struct Unit {
    const char* suffix;
    double seconds;
  };
  // Longest suffixes first: "ms" before "s".
  static const Unit kUnits[] = {{"us", 1e-6}, {"ms", 1e-3}, {"s", 1}, {"m", 60}, {"h", 3600}};
  for (const Unit& u : kUnits) {
    const size_t n = std::strlen(u.suffix);
    if (text.size() <= n || text.compare(text.size() - n, n, u.suffix) != 0) continue;
    const std::string number = text.substr(0, text.size() - n);
    char* end = nullptr;
    const double v = std::strtod(number.c_str(), &end);
    if (number.empty() || end != number.c_str() + number.size() || !std::isfinite(v) || v <= 0)
      break;
    return v * u.seconds;
  }
  return absl::InvalidArgumentError(
      StrCat("'", text, "' is not a duration: a positive number and a unit, e.g. 300ms, 2s"));
}

}  // namespace tokenfab
