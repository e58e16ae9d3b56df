// A worker process's metrics: the engine's counters and gauges, its KV
// transport, its energy meter and an info metric, read at scrape time
// (WorkerMetrics); and per-step histograms fed by the engine thread
// (StepMetrics). One worker (tokenfab worker, tokenfab serve) or several in
// one process (serve --workers N), told apart by a `worker` label.
#ifndef TOKENFAB_SERVER_WORKER_METRICS_H_
#define TOKENFAB_SERVER_WORKER_METRICS_H_

#include <functional>
#include <string>
#include <vector>

#include "prometheus/collectable.h"
#include "prometheus/family.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "server/metric_families.h"
#include "worker/engine/engine.h"
#include "worker/power/energy_monitor.h"
#include "worker/transport/kv_transport.h"

namespace tokenfab {

struct WorkerSource {
  std::string worker;  // the `worker` label; empty for none
  const Engine* engine = nullptr;
  const KvTransport* transport = nullptr;  // optional
  EnergyMonitor* energy = nullptr;         // optional; read afresh at each scrape
  // tokenfab_worker_info's labels; the role may change while it runs.
  std::string model;
  std::string device = "cpu";
  // The worker's backend. Any but "cpu" (a simulated worker: "sim") also
  // labels every one of its metrics, so simulated figures never pass for
  // measured ones.
  std::string backend = "cpu";
  std::function<std::string()> role;  // null: "both"
};

// The labels every metric of one worker carries: `worker` when several
// share a process, `backend` when it is not "cpu" (WorkerSource::backend).
MetricLabels WorkerLabels(const std::string& worker, const std::string& backend);

class WorkerMetrics : public prometheus::Collectable {
 public:
  explicit WorkerMetrics(std::vector<WorkerSource> sources) : sources_(std::move(sources)) {}
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  std::vector<WorkerSource> sources_;
};

// tokenfab_worker_step_duration_seconds and tokenfab_worker_step_batch_size,
// by phase (prefill, decode, mixed). Thread-safe.
class StepMetrics {
 public:
  explicit StepMetrics(prometheus::Registry& registry);
  // What a worker's engine calls after each step (EngineOptions::on_step).
  // A backend other than "cpu" is a label, as in WorkerSource.
  std::function<void(const StepRecord&)> ForWorker(const std::string& worker,
                                                   const std::string& backend = "cpu");

 private:
  prometheus::Family<prometheus::Histogram>& duration_;
  prometheus::Family<prometheus::Histogram>& batch_;
};

}  // namespace tokenfab

#endif  // TOKENFAB_SERVER_WORKER_METRICS_H_
