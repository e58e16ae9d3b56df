#include "server/worker_metrics.h"

#include <array>
#include <map>

#include "server/metric_families.h"

namespace tokenfab {
namespace {

using prometheus::MetricType;

struct Snapshot {
  MetricLabels labels;
  EngineStats s;
  bool has_transport = false;
  KvTransportStats t;
  bool has_energy = false;
  EnergySnapshot e;
};

MetricLabels With(MetricLabels labels, std::string name, std::string value) {
  labels.push_back({std::move(name), std::move(value)});
  return labels;
}

}  // namespace

MetricLabels WorkerLabels(const std::string& worker, const std::string& backend) {
  MetricLabels labels;
  if (!worker.empty()) labels.push_back({"worker", worker});
  if (backend != "cpu") labels.push_back({"backend", backend});
  return labels;
}

std::vector<prometheus::MetricFamily> WorkerMetrics::Collect() const {
  std::vector<Snapshot> snaps;
  for (const WorkerSource& src : sources_) {
    Snapshot snap;
    snap.labels = WorkerLabels(src.worker, src.backend);
    snap.s = src.engine->Stats();
    snap.has_transport = src.transport != nullptr;
    if (snap.has_transport) snap.t = src.transport->Stats();
    snap.has_energy = src.energy != nullptr;
    if (snap.has_energy) snap.e = src.energy->ReadNow();
    snaps.push_back(std::move(snap));
  }
  std::vector<prometheus::MetricFamily> out;
  auto family = [&](const std::string& name, const std::string& help, MetricType type,
                    const std::function<double(const Snapshot&)>& value) {
    LabelledValues values;
    for (const Snapshot& s : snaps) values.push_back({s.labels, value(s)});
    out.push_back(MetricFamilyOf(name, help, type, values));
  };
  // A family with one sample per (worker, label value).
  auto labelled = [&](const std::string& name, const std::string& help, MetricType type,
                      const std::string& label, const std::vector<std::string>& label_values,
                      const std::function<double(const Snapshot&, size_t)>& value,
                      bool (*include)(const Snapshot&) = nullptr) {
    LabelledValues values;
    for (const Snapshot& s : snaps) {
      if (include != nullptr && !include(s)) continue;
      for (size_t i = 0; i < label_values.size(); ++i) {
        values.push_back({With(s.labels, label, label_values[i]), value(s, i)});
      }
    }
    if (!values.empty()) out.push_back(MetricFamilyOf(name, help, type, values));
  };

  {
    LabelledValues info;
    for (size_t i = 0; i < sources_.size(); ++i) {
      const WorkerSource& src = sources_[i];
      MetricLabels l = snaps[i].labels;
      l.push_back({"model", src.model});
      l.push_back({"role", src.role ? src.role() : "both"});
      l.push_back({"device", src.device});
      if (src.backend == "cpu") l.push_back({"backend", src.backend});
      info.push_back({l, 1.0});
    }
    out.push_back(MetricFamilyOf("tokenfab_worker_info",
                                 "The worker's model, role, device and backend (value 1).",
                                 MetricType::Gauge, info));
  }
  family("tokenfab_worker_running_requests", "Sequences in the running batch.", MetricType::Gauge,
         [](const Snapshot& s) { return s.s.running; });
  family("tokenfab_worker_queued_requests", "Sequences waiting to be admitted.", MetricType::Gauge,
         [](const Snapshot& s) { return s.s.waiting; });
  family("tokenfab_worker_kv_blocks_capacity", "KV cache blocks in the pool.", MetricType::Gauge,
         [](const Snapshot& s) { return s.s.kv_blocks_total; });
  family("tokenfab_worker_kv_blocks_used", "KV cache blocks referenced by a sequence.",
         MetricType::Gauge, [](const Snapshot& s) { return s.s.kv_blocks_used; });
  family("tokenfab_worker_kv_blocks_cached", "Unreferenced KV blocks holding a cached prefix.",
         MetricType::Gauge, [](const Snapshot& s) { return s.s.kv_blocks_cached; });
  family("tokenfab_worker_pending_prefill_tokens", "Prompt tokens admitted and not yet computed.",
         MetricType::Gauge, [](const Snapshot& s) { return s.s.pending_prefill_tokens; });
  family("tokenfab_worker_steps_total", "Forward steps run.", MetricType::Counter,
         [](const Snapshot& s) { return s.s.steps; });
  labelled("tokenfab_worker_tokens_total",
           "Tokens computed, by phase: prefill (prompt tokens, cache hits excluded) and decode "
           "(generated tokens).",
           MetricType::Counter, "phase", {"prefill", "decode"}, [](const Snapshot& s, size_t i) {
             return static_cast<double>(i == 0 ? s.s.prefill_tokens : s.s.decode_tokens);
           });
  labelled("tokenfab_worker_busy_seconds_total",
           "Seconds the engine spent stepping, by phase (a mixed step split by token shares).",
           MetricType::Counter, "phase", {"prefill", "decode"}, [](const Snapshot& s, size_t i) {
             return i == 0 ? s.s.prefill_busy_seconds : s.s.decode_busy_seconds;
           });
  family("tokenfab_worker_preemptions_total", "Sequences preempted for lack of KV blocks.",
         MetricType::Counter, [](const Snapshot& s) { return s.s.preemptions; });
  family("tokenfab_worker_prefix_cache_queries_total", "KV blocks looked up in the prefix cache.",
         MetricType::Counter, [](const Snapshot& s) { return s.s.prefix_queries; });
  family("tokenfab_worker_prefix_cache_hits_total", "KV blocks found in the prefix cache.",
         MetricType::Counter, [](const Snapshot& s) { return s.s.prefix_hits; });
  labelled(
      "tokenfab_worker_remote_prefills_total",
      "Prompts this decode worker asked a prefill worker for: ok, or fallback (recomputed "
      "here).",
      MetricType::Counter, "result", {"ok", "fallback"}, [](const Snapshot& s, size_t i) {
        return static_cast<double>(i == 0 ? s.s.remote_prefills_ok : s.s.remote_prefills_failed);
      });
  family("tokenfab_worker_kv_exports_total", "Prompts computed here for a decode worker.",
         MetricType::Counter, [](const Snapshot& s) { return s.s.kv_exports; });

  auto transport = [](const Snapshot& s) { return s.has_transport; };
  labelled(
      "tokenfab_worker_kv_transfer_bytes_total", "KV bytes moved by the KV transport.",
      MetricType::Counter, "direction", {"sent", "received"},
      [](const Snapshot& s, size_t i) {
        return static_cast<double>(i == 0 ? s.t.bytes_sent : s.t.bytes_received);
      },
      transport);
  labelled(
      "tokenfab_worker_kv_transfer_seconds_total",
      "Wall time of completed KV transfers (a sender's includes waiting for its prefill).",
      MetricType::Counter, "direction", {"sent", "received"},
      [](const Snapshot& s, size_t i) { return i == 0 ? s.t.seconds_sent : s.t.seconds_received; },
      transport);
  labelled(
      "tokenfab_worker_kv_transfers_total", "KV transfers completed (sent, received) or failed.",
      MetricType::Counter, "direction", {"sent", "received", "failed"},
      [](const Snapshot& s, size_t i) {
        const std::array<int64_t, 3> v = {s.t.transfers_sent, s.t.transfers_received,
                                          s.t.transfers_failed};
        return static_cast<double>(v[i]);
      },
      transport);
  labelled(
      "tokenfab_worker_kv_connections_refused_total",
      "Connections to the KV port closed before they named a transfer expected here: over "
      "the connection limit, no valid header in time, or a transfer not expected.",
      MetricType::Counter, "reason", {"over_limit", "bad_header", "unexpected"},
      [](const Snapshot& s, size_t i) {
        const std::array<int64_t, 3> v = {s.t.refused_over_limit, s.t.refused_bad_header,
                                          s.t.refused_unexpected};
        return static_cast<double>(v[i]);
      },
      transport);

  // Power and energy, each with the meter's source.
  auto with_source = [&](const std::string& name, const std::string& help, MetricType type,
                         const std::function<double(const EnergySnapshot&)>& value) {
    LabelledValues values;
    for (const Snapshot& s : snaps) {
      if (s.has_energy) values.push_back({With(s.labels, "source", s.e.source), value(s.e)});
    }
    if (!values.empty()) out.push_back(MetricFamilyOf(name, help, type, values));
  };
  with_source("tokenfab_power_watts",
              "Power over the last meter interval (source: nvml, rapl or model, an estimate).",
              MetricType::Gauge, [](const EnergySnapshot& e) { return e.watts; });
  with_source("tokenfab_energy_joules_total", "Energy used since the worker started.",
              MetricType::Counter, [](const EnergySnapshot& e) { return e.joules; });
  with_source("tokenfab_tokens_per_joule", "Generated tokens per joule over the last minute.",
              MetricType::Gauge, [](const EnergySnapshot& e) { return e.tokens_per_joule; });
  with_source("tokenfab_power_meter_errors_total", "Meter readings that failed.",
              MetricType::Counter,
              [](const EnergySnapshot& e) { return static_cast<double>(e.meter_errors); });
  {
    LabelledValues values;
    for (const Snapshot& s : snaps) {
      if (!s.has_energy) continue;
      const MetricLabels l = With(s.labels, "source", s.e.source);
      values.push_back({With(l, "phase", "prefill"), s.e.prefill_joules});
      values.push_back({With(l, "phase", "decode"), s.e.decode_joules});
      values.push_back({With(l, "phase", "idle"), s.e.idle_joules});
    }
    if (!values.empty()) {
      out.push_back(MetricFamilyOf(
          "tokenfab_phase_energy_joules_total",
          "Energy by the phase the engine ran when it was used (time-weighted): prefill, decode, "
          "idle.",
          MetricType::Counter, values));
    }
  }
  return out;
}

StepMetrics::StepMetrics(prometheus::Registry& registry)
    : duration_(prometheus::BuildHistogram()
                    .Name("tokenfab_worker_step_duration_seconds")
                    .Help("Forward step time (schedule, forward pass, sampling), by phase: "
                          "prefill, decode or mixed.")
                    .Register(registry)),
      batch_(prometheus::BuildHistogram()
                 .Name("tokenfab_worker_step_batch_size")
                 .Help("Sequences in a forward step, by phase.")
                 .Register(registry)) {}

std::function<void(const StepRecord&)> StepMetrics::ForWorker(const std::string& worker,
                                                              const std::string& backend) {
  const prometheus::Histogram::BucketBoundaries seconds = {
      0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30};
  const prometheus::Histogram::BucketBoundaries sizes = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512};
  struct Phase {
    prometheus::Histogram* duration;
    prometheus::Histogram* batch;
  };
  std::array<Phase, 3> phases;
  const std::array<const char*, 3> names = {"prefill", "decode", "mixed"};
  for (size_t i = 0; i < names.size(); ++i) {
    std::map<std::string, std::string> labels = {{"phase", names[i]}};
    for (const auto& l : WorkerLabels(worker, backend)) labels[l.name] = l.value;
    phases[i] = {&duration_.Add(labels, seconds), &batch_.Add(labels, sizes)};
  }
  return [phases](const StepRecord& r) {
    const std::string_view phase = r.phase;
    const size_t i = phase == "prefill" ? 0 : phase == "decode" ? 1 : 2;
    phases[i].duration->Observe(r.seconds);
    phases[i].batch->Observe(r.sequences);
  };
}

}  // namespace tokenfab
