// tokenfab serve: a router and its workers in one process. gRPC (tokenfab.v1
// Generation, health, reflection), the OpenAI-compatible HTTP API and
// Prometheus metrics over the CPU engine (or, with --device cuda:N, the CUDA
// backend on one GPU) with continuous batching.
//
// --workers 0 (the default) binds the router straight to one engine in the
// process. --workers N starts N workers that attach to the router over
// loopback gRPC and move KV over loopback TCP, exactly as `tokenfab router`
// and `tokenfab worker` processes do.
//
//   tokenfab serve [--model PATH] [--grpc-port 50051] [--http-port 8000]
//                  [--metrics-port 9400] [--threads N] [--workers N] ...
#include <cstdio>
#include <memory>

#include "absl/time/clock.h"
#include "common/strings.h"
#include "common/thread_pool.h"
#include "prometheus/registry.h"
#include "scheduler/cluster.h"
#include "server/auth_metrics.h"
#include "server/cli/auth_flags.h"
#include "server/cli/cli_util.h"
#include "server/cli/commands.h"
#include "server/cli/engine_flags.h"
#include "server/cli/planner_flags.h"
#include "server/cli/power_flags.h"
#include "server/cli/routing_flags.h"
#include "server/frontend.h"
#include "server/in_process_worker.h"
#include "server/key_reloader.h"
#include "server/request_metrics.h"
#include "server/router.h"
#include "server/router_node.h"
#include "server/worker_metrics.h"
#include "server/worker_node.h"
#include "worker/engine/backend_factory.h"
#include "worker/engine/engine.h"
#include "worker/engine_energy.h"
#include "worker/model_loader.h"

namespace tokenfab {
namespace {

// One engine bound directly to the router (no internal network hop), on
// the CPU or one GPU.
int ServeDirect(const LoadedModel& model, const EngineFlags& e, bool kv_cache_mb_given,
                const PowerFlags& power, const FrontendOptions& fo, const std::string& model_id,
                const std::string& model_path, const sigset_t& signals) {
  auto made = MakeDeviceBackend(model, e.backend(kv_cache_mb_given));
  if (!made.ok()) return ReportError("serve", made.status());
  Backend* backend = made->backend.get();
  auto registry = std::make_shared<prometheus::Registry>();
  StepMetrics steps(*registry);
  RequestMetrics requests(*registry);
  const std::string backend_name(backend->name());
  auto engine = std::make_unique<Engine>(
      backend, EngineOptions{.scheduler = e.scheduler(),
                             .on_step = steps.ForWorker("", backend_name)});
  std::string power_fallback;
  auto energy = StartEnergyMonitor(*engine, power.options(e.device), 1, &power_fallback);
  if (!energy.ok()) return ReportError("serve", energy.status());
  InProcessWorker worker(engine.get());
  Router router(model, &worker, {.model_id = model_id, .metrics = &requests});
  WorkerSource source{.engine = engine.get(),
                      .energy = energy->get(),
                      .model = model_id,
                      .device = e.device,
                      .backend = backend_name};
  auto frontend =
      Frontend::Start(&router, fo,
                      {std::make_shared<WorkerMetrics>(std::vector<WorkerSource>{source}), registry,
                       std::make_shared<AuthMetrics>(NamedKeySets{{"api_key", fo.api_keys}})});
  if (!frontend.ok()) return ReportError("serve", frontend.status());
  PrintPowerSource("serve", (*energy)->meter(), power_fallback);
  std::fprintf(stderr,
               "tokenfab serve: model %s (%s, context %d) on %s\n"
               "tokenfab serve: %s\n",
               model_id.c_str(), model_path.c_str(), model.config.context_length,
               made->description.c_str(), (*frontend)->Addresses().c_str());
  std::fflush(stderr);
  KeyReloader keys("tokenfab serve", {fo.api_keys, fo.tls});
  std::fprintf(stderr, "tokenfab serve: %s, shutting down\n",
               WaitForSignal(signals, [&keys] { keys.ReloadNow(); }));
  // Stop taking requests, end the ones in flight (they finish as cancelled),
  // then stop the engine.
  (*frontend)->Shutdown();
  energy->reset();
  engine.reset();
  return 0;
}

}  // namespace

int RunServe(const std::vector<std::string>& args) {
  // First, so no thread starts unblocked and a SIGHUP (systemctl reload)
  // during start-up waits for WaitForSignal instead of ending the process.
  const sigset_t signals = BlockControlSignals();
  std::string model_path, model_id;
  EngineFlags engine;
  PowerFlags power;
  FrontendOptions fo;
  RouterNodeOptions ro;
  int32_t workers = 0, prefill_workers = 0, worker_timeout_ms = 1500, max_prefill_queue = 16384;
  FlagSet flags(
      "serve",
      "Serve a model over gRPC and the OpenAI HTTP API (router and workers in one process).");
  flags.AddString("model", &model_path,
                  "GGUF file or Hugging Face folder (default: the setup step's SmolLM2)");
  flags.AddString("model-id", &model_id, "the model name clients use (default: the file name)");
  flags.AddString("host", &fo.host, "address to listen on (default 0.0.0.0)");
  flags.AddInt("grpc-port", &fo.grpc_port, "gRPC port (default 50051; 0 picks one)");
  flags.AddInt("http-port", &fo.http_port,
               "OpenAI-compatible HTTP port (default 8000; 0 picks one)");
  flags.AddInt("metrics-port", &fo.metrics_port,
               "Prometheus /metrics port (default 9400; 0 picks one)");
  flags.AddInt("http-threads", &fo.http_threads, "HTTP I/O threads (default 1)");
  flags.AddInt("workers", &workers,
               "0 (default): one engine bound to the router; N: N workers attached over loopback "
               "gRPC, KV moved over loopback TCP (--threads each)");
  flags.AddInt("prefill-workers", &prefill_workers,
               "with --workers N: how many of them take the prefill role (the rest: both)");
  AddRoutingFlags(flags, &ro.routing, &worker_timeout_ms, &max_prefill_queue);
  PlannerFlags planner;
  AddPlannerFlags(flags, &planner);
  AddEngineFlags(flags, &engine, std::min(HardwareThreads(), 1024));
  AddPowerFlags(flags, &power);
  std::string api_key_file;
  AddApiKeyFlag(flags, &api_key_file, /*serving=*/true);
  TlsFiles tls;
  AddTlsServerFlags(flags, &tls);
  if (int rc = ParseFlagsOrExit(flags, "serve", args); rc >= 0) return rc;
  absl::StatusOr<KeySet> api_keys = LoadApiKeys(api_key_file);
  absl::Status check = api_keys.status();
  if (check.ok()) {
    fo.api_keys = *std::move(api_keys);
    check = LoadTls(tls, &fo.tls);
  }
  if (check.ok()) check = CheckEngineFlags(engine);
  if (check.ok()) check = CheckPowerFlags(power);
  for (auto [name, v] : {std::pair<std::string_view, int32_t>{"grpc-port", fo.grpc_port},
                         {"http-port", fo.http_port},
                         {"metrics-port", fo.metrics_port}}) {
    if (check.ok()) check = CheckRange(name, v, 0, 65535);
  }
  if (check.ok()) check = CheckRange("http-threads", fo.http_threads, 1, 64);
  if (check.ok()) check = CheckRange("workers", workers, 0, 64);
  if (check.ok())
    check = CheckRange("prefill-workers", prefill_workers, 0, std::max(0, workers - 1));
  if (check.ok()) check = FinishRoutingFlags(&ro.routing, worker_timeout_ms, max_prefill_queue);
  if (check.ok()) check = FinishPlannerFlags(planner, &ro.planner_profile, &ro.planner);
  if (check.ok() && engine.device != "cpu" && workers > 0) {
    check = absl::InvalidArgumentError(
        "--device cuda:N runs one engine on one GPU (--workers 0); for several GPUs start one "
        "`tokenfab worker --device cuda:N` per GPU and a `tokenfab router`");
  }
  if (check.ok() && ro.planner_profile && workers == 0) {
    check = absl::InvalidArgumentError("the planner places workers: use it with --workers N");
  }
  if (!check.ok()) {
    ReportError("serve", check);
    return kExitUsage;
  }
  if (model_path.empty()) model_path = DefaultModelPath();
  const std::string id = ModelIdFor(model_path, model_id);

  auto model = LoadModel(model_path);
  if (!model.ok()) return ReportError("serve", model.status());
  if (workers == 0) {
    return ServeDirect(**model, engine, flags.WasGiven("kv-cache-mb"), power, fo, id, model_path,
                       signals);
  }

  // Router and workers, over the same loopback paths as separate processes.
  ro.frontend = fo;
  ro.model_id = id;
  ro.internal_host = "127.0.0.1";
  ro.internal_port = 0;
  // The workers' loopback ports are this process's alone: a fresh key keeps
  // other local users from driving them.
  ro.cluster_key = KeySet::Random();
  std::vector<std::unique_ptr<WorkerNode>> nodes;
  auto step_registry = std::make_shared<prometheus::Registry>();
  StepMetrics steps(*step_registry);
  // The router starts first (workers need its port); its metrics read the
  // workers through a collectable filled in once they exist.
  class Deferred : public prometheus::Collectable {
   public:
    std::vector<prometheus::MetricFamily> Collect() const override {
      absl::MutexLock lock(&mu);
      return inner ? inner->Collect() : std::vector<prometheus::MetricFamily>{};
    }
    mutable absl::Mutex mu;
    std::unique_ptr<WorkerMetrics> inner;
  };
  auto deferred = std::make_shared<Deferred>();
  auto router = RouterNode::Start(**model, ro, {deferred, step_registry});
  if (!router.ok()) return ReportError("serve", router.status());
  std::vector<WorkerSource> sources;
  for (int i = 0; i < workers; ++i) {
    WorkerNodeOptions wo;
    wo.router = StrCat("127.0.0.1:", (*router)->internal_port());
    wo.id = StrCat("worker-", i);
    wo.role =
        i < prefill_workers ? internal::v1::WORKER_ROLE_PREFILL : internal::v1::WORKER_ROLE_BOTH;
    wo.engine = engine.backend(flags.WasGiven("kv-cache-mb"));
    wo.power = power.options(wo.engine.device);
    wo.power_sharers = workers;
    wo.on_step = steps.ForWorker(wo.id);
    wo.cluster_key = ro.cluster_key;
    auto node = WorkerNode::Start(**model, wo);
    if (!node.ok()) return ReportError("serve", node.status());
    WorkerNode* raw = node->get();
    sources.push_back({.worker = wo.id,
                       .engine = &raw->engine(),
                       .transport = &raw->transport(),
                       .energy = &raw->energy(),
                       .model = id,
                       .device = wo.engine.device,
                       .role = [raw] { return std::string(RoleName(raw->role())); }});
    if (i == 0) PrintPowerSource("serve", raw->energy().meter(), raw->power_fallback());
    nodes.push_back(std::move(*node));
  }
  {
    absl::MutexLock lock(&deferred->mu);
    deferred->inner = std::make_unique<WorkerMetrics>(sources);
  }
  // Ready when every worker has attached (a client could otherwise arrive first).
  for (const auto& node : nodes) {
    for (int i = 0; i < 500 && !node->attached(); ++i) absl::SleepFor(absl::Milliseconds(20));
    if (!node->attached()) {
      return ReportError("serve",
                         absl::UnavailableError(StrCat("worker ", node->id(), " did not attach")));
    }
  }
  std::fprintf(
      stderr,
      "tokenfab serve: model %s (%s), %d workers (%d prefill) of %d threads, disaggregation above "
      "%d tokens\n"
      "tokenfab serve: %s\n",
      id.c_str(), model_path.c_str(), workers, prefill_workers, engine.threads,
      ro.routing.disagg_threshold, (*router)->frontend().Addresses().c_str());
  std::fflush(stderr);
  KeyReloader keys("tokenfab serve", {fo.api_keys, fo.tls});
  std::fprintf(stderr, "tokenfab serve: %s, shutting down\n",
               WaitForSignal(signals, [&keys] { keys.ReloadNow(); }));
  (*router)->Shutdown();
  router->reset();
  nodes.clear();
  return 0;
}

}  // namespace tokenfab
