#include "server/engine_metrics.h"

#include <functional>

namespace tokenfab {

prometheus::MetricFamily MetricFamilyOf(
    const std::string& name, const std::string& help, prometheus::MetricType type,
    const std::vector<std::pair<std::vector<prometheus::ClientMetric::Label>, double>>& values) {
  prometheus::MetricFamily f;
  f.name = name;
  f.help = help;
  f.type = type;
  for (const auto& [labels, value] : values) {
    prometheus::ClientMetric m;
    m.label = labels;
    if (type == prometheus::MetricType::Counter) {
      m.counter.value = value;
    } else {
      m.gauge.value = value;
    }
    f.metric.push_back(std::move(m));
  }
  return f;
}

std::vector<prometheus::MetricFamily> EngineMetrics::Collect() const {
  using prometheus::MetricType;
  struct Snapshot {
    std::vector<prometheus::ClientMetric::Label> labels;
    EngineStats s;
    KvTransportStats t;
    bool has_transport;
  };
  std::vector<Snapshot> snaps;
  for (const EngineSource& src : sources_) {
    Snapshot snap;
    if (!src.worker.empty()) snap.labels.push_back({"worker", src.worker});
    snap.s = src.engine->Stats();
    snap.has_transport = src.transport != nullptr;
    if (snap.has_transport) snap.t = src.transport->Stats();
    snaps.push_back(std::move(snap));
  }
  std::vector<prometheus::MetricFamily> out;
  auto family = [&](const std::string& name, const std::string& help, MetricType type,
                    const std::function<double(const Snapshot&)>& value) {
    std::vector<std::pair<std::vector<prometheus::ClientMetric::Label>, double>> values;
    for (const Snapshot& s : snaps) values.push_back({s.labels, value(s)});
    out.push_back(MetricFamilyOf(name, help, type, values));
  };
  family("tokenfab_worker_running_requests", "Sequences in the running batch.", MetricType::Gauge,
         [](const Snapshot& s) { return s.s.running; });
  family("tokenfab_worker_queued_requests", "Sequences waiting to be admitted.", MetricType::Gauge,
         [](const Snapshot& s) { return s.s.waiting; });
  family("tokenfab_worker_kv_blocks_total", "KV cache blocks in the pool.", MetricType::Gauge,
         [](const Snapshot& s) { return s.s.kv_blocks_total; });
  family("tokenfab_worker_kv_blocks_used", "KV cache blocks referenced by a sequence.",
         MetricType::Gauge, [](const Snapshot& s) { return s.s.kv_blocks_used; });
  family("tokenfab_worker_kv_blocks_cached", "Unreferenced KV blocks holding a cached prefix.",
         MetricType::Gauge, [](const Snapshot& s) { return s.s.kv_blocks_cached; });
  family("tokenfab_worker_pending_prefill_tokens", "Prompt tokens admitted and not yet computed.",
         MetricType::Gauge, [](const Snapshot& s) { return s.s.pending_prefill_tokens; });
  family("tokenfab_worker_steps_total", "Forward steps run.", MetricType::Counter,
         [](const Snapshot& s) { return s.s.steps; });
  family("tokenfab_worker_prefill_tokens_total", "Prompt tokens computed.", MetricType::Counter,
         [](const Snapshot& s) { return s.s.prefill_tokens; });
  family("tokenfab_worker_decode_tokens_total", "Tokens decoded.", MetricType::Counter,
         [](const Snapshot& s) { return s.s.decode_tokens; });
  family("tokenfab_worker_preemptions_total", "Sequences preempted for lack of KV blocks.",
         MetricType::Counter, [](const Snapshot& s) { return s.s.preemptions; });
  family("tokenfab_worker_prefix_cache_queries_total", "KV blocks looked up in the prefix cache.",
         MetricType::Counter, [](const Snapshot& s) { return s.s.prefix_queries; });
  family("tokenfab_worker_prefix_cache_hits_total", "KV blocks found in the prefix cache.",
         MetricType::Counter, [](const Snapshot& s) { return s.s.prefix_hits; });
  // Disaggregation.
  {
    std::vector<std::pair<std::vector<prometheus::ClientMetric::Label>, double>> values;
    for (const Snapshot& s : snaps) {
      auto ok = s.labels, fallback = s.labels;
      ok.push_back({"result", "ok"});
      fallback.push_back({"result", "fallback"});
      values.push_back({ok, static_cast<double>(s.s.remote_prefills_ok)});
      values.push_back({fallback, static_cast<double>(s.s.remote_prefills_failed)});
    }
    out.push_back(MetricFamilyOf(
        "tokenfab_worker_remote_prefills_total",
        "Prompts this decode worker asked a prefill worker for: ok, or fallback (recomputed here).",
        MetricType::Counter, values));
  }
  family("tokenfab_worker_kv_exports_total", "Prompts computed here for a decode worker.",
         MetricType::Counter, [](const Snapshot& s) { return s.s.kv_exports; });
  if (!snaps.empty() && snaps[0].has_transport) {
    std::vector<std::pair<std::vector<prometheus::ClientMetric::Label>, double>> bytes, transfers;
    for (const Snapshot& s : snaps) {
      auto sent = s.labels, received = s.labels, failed = s.labels;
      sent.push_back({"direction", "sent"});
      received.push_back({"direction", "received"});
      bytes.push_back({sent, static_cast<double>(s.t.bytes_sent)});
      bytes.push_back({received, static_cast<double>(s.t.bytes_received)});
      transfers.push_back({sent, static_cast<double>(s.t.transfers_sent)});
      transfers.push_back({received, static_cast<double>(s.t.transfers_received)});
      failed.push_back({"direction", "failed"});
      transfers.push_back({failed, static_cast<double>(s.t.transfers_failed)});
    }
    out.push_back(MetricFamilyOf("tokenfab_worker_kv_transfer_bytes_total",
                                 "KV bytes moved by the KV transport.", MetricType::Counter,
                                 bytes));
    out.push_back(MetricFamilyOf("tokenfab_worker_kv_transfers_total",
                                 "KV transfers completed (sent, received) or failed.",
                                 MetricType::Counter, transfers));
  }
  return out;
}

}  // namespace tokenfab
