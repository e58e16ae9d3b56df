// tokenfab router: the public API (gRPC, OpenAI HTTP, metrics) in front of
// the workers that attach to its internal port. It loads only the model's
// tokenizer and chat template; workers with another model are refused.
//
//   tokenfab router [--model PATH] [--grpc-port 50051] [--http-port 8000]
//                   [--metrics-port 9400] [--internal-port 50052]
//                   [--disagg-threshold 512] [--planner-profile P --ttft-target 2s
//                   --itl-target 100ms --planner-interval 10s] ...
#include <cstdio>

#include "common/strings.h"
#include "server/cli/auth_flags.h"
#include "server/cli/cli_util.h"
#include "server/cli/commands.h"
#include "server/cli/engine_flags.h"
#include "server/cli/planner_flags.h"
#include "server/cli/routing_flags.h"
#include "server/key_reloader.h"
#include "server/router_node.h"

namespace tokenfab {

int RunRouter(const std::vector<std::string>& args) {
  // First, so no thread starts unblocked and a SIGHUP (systemctl reload)
  // during start-up waits for WaitForSignal instead of ending the process.
  const sigset_t signals = BlockControlSignals();
  std::string model_path, model_id;
  RouterNodeOptions o;
  int32_t worker_timeout_ms = 1500, max_prefill_queue = 16384;
  FlagSet flags("router",
                "Route requests across workers (prefill/decode disaggregation, KV-aware).");
  flags.AddString("model", &model_path,
                  "GGUF file or Hugging Face folder; only its tokenizer and template are read");
  flags.AddString("model-id", &model_id, "the model name clients use (default: the file name)");
  flags.AddString("host", &o.frontend.host, "address to listen on (default 0.0.0.0)");
  flags.AddInt("grpc-port", &o.frontend.grpc_port, "gRPC port (default 50051; 0 picks one)");
  flags.AddInt("http-port", &o.frontend.http_port,
               "OpenAI-compatible HTTP port (default 8000; 0 picks one)");
  flags.AddInt("metrics-port", &o.frontend.metrics_port,
               "Prometheus /metrics port (default 9400; 0 picks one)");
  flags.AddInt("http-threads", &o.frontend.http_threads, "HTTP I/O threads (default 1)");
  flags.AddInt("internal-port", &o.internal_port,
               "port workers attach to, and RouterAdmin (default 50052)");
  AddRoutingFlags(flags, &o.routing, &worker_timeout_ms, &max_prefill_queue);
  PlannerFlags planner;
  AddPlannerFlags(flags, &planner);
  std::string api_key_file, cluster_key_file;
  AddApiKeyFlag(flags, &api_key_file, /*serving=*/true);
  AddClusterKeyFlag(flags, &cluster_key_file, /*serving=*/true);
  TlsFiles tls;
  AddTlsServerFlags(flags, &tls);
  if (int rc = ParseFlagsOrExit(flags, "router", args); rc >= 0) return rc;
  absl::Status check = FinishRoutingFlags(&o.routing, worker_timeout_ms, max_prefill_queue);
  absl::StatusOr<KeySet> api_keys = LoadApiKeys(api_key_file);
  absl::StatusOr<KeySet> cluster_key = LoadClusterKey(cluster_key_file);
  if (check.ok()) check = api_keys.status();
  if (check.ok()) check = cluster_key.status();
  if (check.ok()) check = LoadTls(tls, &o.frontend.tls);
  if (check.ok()) {
    o.frontend.api_keys = *std::move(api_keys);
    o.cluster_key = *std::move(cluster_key);
  }
  if (check.ok()) check = FinishPlannerFlags(planner, &o.planner_profile, &o.planner);
  for (auto [name, v] : {std::pair<std::string_view, int32_t>{"grpc-port", o.frontend.grpc_port},
                         {"http-port", o.frontend.http_port},
                         {"metrics-port", o.frontend.metrics_port},
                         {"internal-port", o.internal_port}}) {
    if (check.ok()) check = CheckRange(name, v, 0, 65535);
  }
  if (check.ok()) check = CheckRange("http-threads", o.frontend.http_threads, 1, 64);
  if (!check.ok()) {
    ReportError("router", check);
    return kExitUsage;
  }
  if (model_path.empty()) model_path = DefaultModelPath();
  o.model_id = ModelIdFor(model_path, model_id);
  o.internal_host = o.frontend.host;

  auto model = LoadModel(model_path, {.load_weights = false});
  if (!model.ok()) return ReportError("router", model.status());
  auto node = RouterNode::Start(**model, o);
  if (!node.ok()) return ReportError("router", node.status());
  std::fprintf(stderr,
               "tokenfab router: model %s (%s), %s, workers attach to %s:%d; disaggregation "
               "above %d tokens\n",
               o.model_id.c_str(), model_path.c_str(), (*node)->frontend().Addresses().c_str(),
               o.frontend.host.c_str(), (*node)->internal_port(), o.routing.disagg_threshold);
  if (o.planner_profile) {
    std::fprintf(stderr,
                 "tokenfab router: planner every %s for TTFT <= %s and ITL <= %s (%s, %s "
                 "predictor, %s), profile %s (%s); GET /v1/planner\n",
                 planner.interval.c_str(), planner.ttft_target.c_str(),
                 planner.itl_target.c_str(), planner.mode.c_str(), planner.predictor.c_str(),
                 o.planner.act ? "acting on the fleet" : "recommending only",
                 planner.profile.c_str(), o.planner_profile->hardware.c_str());
  }
  std::fflush(stderr);
  KeyReloader keys("tokenfab router", {o.frontend.api_keys, o.cluster_key, o.frontend.tls});
  std::fprintf(stderr, "tokenfab router: %s, shutting down\n",
               WaitForSignal(signals, [&keys] { keys.ReloadNow(); }));
  node->reset();
  return 0;
}

}  // namespace tokenfab
