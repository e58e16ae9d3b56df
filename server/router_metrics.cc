#include "server/router_metrics.h"

#include "server/engine_metrics.h"

namespace tokenfab {

std::vector<prometheus::MetricFamily> RouterMetrics::Collect() const {
  using prometheus::MetricType;
  using Values = std::vector<std::pair<std::vector<prometheus::ClientMetric::Label>, double>>;
  std::vector<prometheus::MetricFamily> out;
  Values decisions;
  // Every label pair appears from the start, so rate() works before the first one.
  std::map<std::pair<std::string, std::string>, int64_t> all = {{{"remote", "above_threshold"}, 0},
                                                                {{"local", "below_threshold"}, 0},
                                                                {{"local", "disabled"}, 0},
                                                                {{"local", "no_prefill_worker"}, 0},
                                                                {{"local", "prefill_busy"}, 0}};
  for (const auto& [key, n] : cluster_->Decisions()) all[key] = n;
  for (const auto& [key, n] : all) {
    decisions.push_back(
        {{{"decision", key.first}, {"reason", key.second}}, static_cast<double>(n)});
  }
  out.push_back(
      MetricFamilyOf("tokenfab_router_prefill_decisions_total",
                     "Where each request's prompt was computed: remote (a prefill worker) "
                     "or local (its decode worker), and why.",
                     MetricType::Counter, decisions));
  Values workers;
  for (const auto& [role, n] : cluster_->WorkersByRole()) {
    workers.push_back({{{"role", role}}, static_cast<double>(n)});
  }
  out.push_back(MetricFamilyOf("tokenfab_router_workers",
                               "Workers attached to the router, by role.", MetricType::Gauge,
                               workers));
  out.push_back(MetricFamilyOf("tokenfab_router_migrations_total",
                               "Requests moved to another worker after theirs failed mid-stream.",
                               MetricType::Counter,
                               {{{}, static_cast<double>(client_->migrations())}}));
  out.push_back(MetricFamilyOf("tokenfab_router_requests_in_flight",
                               "Requests routed and not finished.", MetricType::Gauge,
                               {{{}, static_cast<double>(client_->in_flight())}}));
  out.push_back(
      MetricFamilyOf("tokenfab_router_kv_transfer_bytes_total",
                     "KV bytes decode workers received from prefill workers (from their reports).",
                     MetricType::Counter, {{{}, static_cast<double>(cluster_->KvBytesMoved())}}));
  return out;
}

}  // namespace tokenfab
