// Exposes engines' counters and gauges on a Prometheus registry, read at
// scrape time: one worker (tokenfab worker, tokenfab serve) or several in
// one process (serve --workers N), told apart by a `worker` label. With a
// KV transport, its bytes and transfers too.
#ifndef TOKENFAB_SERVER_ENGINE_METRICS_H_
#define TOKENFAB_SERVER_ENGINE_METRICS_H_

#include <string>
#include <vector>

#include "prometheus/collectable.h"
#include "prometheus/metric_family.h"
#include "worker/engine/engine.h"
#include "worker/transport/kv_transport.h"

namespace tokenfab {

struct EngineSource {
  std::string worker;  // the `worker` label; empty for none
  const Engine* engine = nullptr;
  const KvTransport* transport = nullptr;  // optional
};

class EngineMetrics : public prometheus::Collectable {
 public:
  explicit EngineMetrics(const Engine* engine) : sources_{{"", engine, nullptr}} {}
  explicit EngineMetrics(std::vector<EngineSource> sources) : sources_(std::move(sources)) {}
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  std::vector<EngineSource> sources_;
};

// Builds a family with one sample per entry of `values` (label pairs, value).
prometheus::MetricFamily MetricFamilyOf(
    const std::string& name, const std::string& help, prometheus::MetricType type,
    const std::vector<std::pair<std::vector<prometheus::ClientMetric::Label>, double>>& values);

}  // namespace tokenfab

#endif  // TOKENFAB_SERVER_ENGINE_METRICS_H_
