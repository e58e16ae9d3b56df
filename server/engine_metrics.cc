#include "server/engine_metrics.h"

#include <string>

namespace tokenfab {
namespace {

prometheus::MetricFamily Family(const std::string& name, const std::string& help,
                                prometheus::MetricType type, double value) {
  prometheus::MetricFamily f;
  f.name = name;
  f.help = help;
  f.type = type;
  prometheus::ClientMetric m;
  if (type == prometheus::MetricType::Counter) {
    m.counter.value = value;
  } else {
    m.gauge.value = value;
  }
  f.metric.push_back(std::move(m));
  return f;
}

}  // namespace

std::vector<prometheus::MetricFamily> EngineMetrics::Collect() const {
  const EngineStats s = engine_->Stats();
  using prometheus::MetricType;
  return {
      Family("tokenfab_worker_running_requests", "Sequences in the running batch.",
             MetricType::Gauge, s.running),
      Family("tokenfab_worker_queued_requests", "Sequences waiting to be admitted.",
             MetricType::Gauge, s.waiting),
      Family("tokenfab_worker_kv_blocks_total", "KV cache blocks in the pool.", MetricType::Gauge,
             s.kv_blocks_total),
      Family("tokenfab_worker_kv_blocks_used", "KV cache blocks referenced by a sequence.",
             MetricType::Gauge, s.kv_blocks_used),
      Family("tokenfab_worker_kv_blocks_cached", "Unreferenced KV blocks holding a cached prefix.",
             MetricType::Gauge, s.kv_blocks_cached),
      Family("tokenfab_worker_steps_total", "Forward steps run.", MetricType::Counter, s.steps),
      Family("tokenfab_worker_prefill_tokens_total", "Prompt tokens computed.", MetricType::Counter,
             s.prefill_tokens),
      Family("tokenfab_worker_decode_tokens_total", "Tokens decoded.", MetricType::Counter,
             s.decode_tokens),
      Family("tokenfab_worker_preemptions_total", "Sequences preempted for lack of KV blocks.",
             MetricType::Counter, s.preemptions),
      Family("tokenfab_worker_prefix_cache_queries_total", "KV blocks looked up in the prefix cache.",
             MetricType::Counter, s.prefix_queries),
      Family("tokenfab_worker_prefix_cache_hits_total", "KV blocks found in the prefix cache.",
             MetricType::Counter, s.prefix_hits),
  };
}

}  // namespace tokenfab
