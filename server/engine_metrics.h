// Exposes an engine's counters and gauges on a Prometheus registry, read at
// scrape time (the full metrics set of the worker and router comes with the
// telemetry work; this is the part `serve` needs to be observable now).
#ifndef TOKENFAB_SERVER_ENGINE_METRICS_H_
#define TOKENFAB_SERVER_ENGINE_METRICS_H_

#include <vector>

#include "prometheus/collectable.h"
#include "prometheus/metric_family.h"
#include "worker/engine/engine.h"

namespace tokenfab {

class EngineMetrics : public prometheus::Collectable {
 public:
  explicit EngineMetrics(const Engine* engine) : engine_(engine) {}
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  const Engine* engine_;
};

}  // namespace tokenfab

#endif  // TOKENFAB_SERVER_ENGINE_METRICS_H_
