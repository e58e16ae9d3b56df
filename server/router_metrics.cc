#include "server/router_metrics.h"

#include "server/metric_families.h"

namespace tokenfab {

std::vector<prometheus::MetricFamily> RouterMetrics::Collect() const {
  using prometheus::MetricType;
  using Values = LabelledValues;
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
  out.push_back(
      MetricFamilyOf("tokenfab_router_kv_transfer_bytes_total",
                     "KV bytes decode workers received from prefill workers (from their reports).",
                     MetricType::Counter, {{{}, static_cast<double>(cluster_->KvBytesMoved())}}));
  Values active_requests, active_blocks, queued_prefill;
  for (const Cluster::WorkerLoad& l : cluster_->Loads()) {
    active_requests.push_back({{{"worker", l.id}}, static_cast<double>(l.active_requests)});
    active_blocks.push_back({{{"worker", l.id}}, static_cast<double>(l.active_blocks)});
    queued_prefill.push_back({{{"worker", l.id}}, static_cast<double>(l.queued_prefill_tokens)});
  }
  out.push_back(MetricFamilyOf("tokenfab_router_worker_active_requests",
                               "Requests on each worker as the router sees them.",
                               MetricType::Gauge, active_requests));
  out.push_back(MetricFamilyOf("tokenfab_router_worker_active_blocks",
                               "KV blocks held on each worker as the router sees them.",
                               MetricType::Gauge, active_blocks));
  out.push_back(MetricFamilyOf("tokenfab_router_worker_queued_prefill_tokens",
                               "Prompt tokens queued for prefill on each worker as the router "
                               "sees them.",
                               MetricType::Gauge, queued_prefill));
  const Cluster::OverlapStats overlap = cluster_->Overlap();
  HistogramValue h;
  h.bounds.assign(Cluster::kOverlapBounds.begin(), Cluster::kOverlapBounds.end());
  h.counts.assign(overlap.counts.begin(), overlap.counts.end());
  h.sum = overlap.sum;
  out.push_back(HistogramFamilyOf(
      "tokenfab_router_kv_overlap_ratio",
      "Share of a routed prompt's blocks already cached on the decode worker chosen for it.",
      {h}));
  out.push_back(MetricFamilyOf("tokenfab_router_kv_overlap_blocks_total",
                               "Prompt blocks routed (kind=prompt) and found cached on the chosen "
                               "decode worker (kind=hit).",
                               MetricType::Counter,
                               {{{{"kind", "prompt"}}, static_cast<double>(overlap.prompt_blocks)},
                                {{{"kind", "hit"}}, static_cast<double>(overlap.hit_blocks)}}));
  return out;
}

}  // namespace tokenfab
