// tokenfab worker: loads the model, serves the Worker API (Generate,
// Prefill) and attaches to a router. SIGTERM (or the router's drain order)
// drains it: no new requests, the ones in flight finish, then it exits.
//
//   tokenfab worker --router HOST:PORT[,HOST:PORT...] --role prefill|decode|both [--model PATH]
//                   [--listen HOST:PORT] [--device cpu] [--transport tcp]
//                   [--threads N] [--metrics-port P] [--backend sim --profile P] ...
#include <cstdio>
#include <thread>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/strings.h"
#include "prometheus/registry.h"
#include "scheduler/cluster.h"
#include "scheduler/profile.h"
#include "server/auth_metrics.h"
#include "server/cli/auth_flags.h"
#include "server/cli/cli_util.h"
#include "server/cli/commands.h"
#include "server/cli/engine_flags.h"
#include "server/cli/power_flags.h"
#include "server/frontend.h"
#include "server/key_reloader.h"
#include "server/router_set.h"
#include "server/worker_metrics.h"
#include "server/worker_node.h"

namespace tokenfab {

absl::StatusOr<internal::v1::WorkerRole> ParseRole(const std::string& role) {
  if (role == "both") return internal::v1::WORKER_ROLE_BOTH;
  if (role == "prefill") return internal::v1::WORKER_ROLE_PREFILL;
  if (role == "decode") return internal::v1::WORKER_ROLE_DECODE;
  return absl::InvalidArgumentError(
      StrCat("--role must be prefill, decode or both, got '", role, "'"));
}

int RunWorker(const std::vector<std::string>& args) {
  // First, so no thread starts unblocked and a SIGHUP (systemctl reload)
  // during start-up waits for WaitForSignal instead of ending the process.
  const sigset_t signals = BlockControlSignals();
  std::string model_path, role = "both", metrics_host = "0.0.0.0", profile_path;
  int32_t metrics_port = -1, prefill_timeout_ms = 30000, drain_timeout_s = 60;
  EngineFlags engine;
  PowerFlags power;
  WorkerNodeOptions o;
  FlagSet flags("worker", "Run a worker: load the model, attach to a router, serve its requests.");
  flags.AddString("router", &o.router,
                  "the router's internal address HOST:PORT (required); a comma-separated list, or a "
                  "name that resolves to several routers, attaches to each (names are resolved "
                  "again every 5 s)",
                  true);
  flags.AddString("role", &role, "prefill, decode or both (default both)");
  flags.AddString("model", &model_path,
                  "GGUF file or Hugging Face folder (default: the setup step's SmolLM2)");
  flags.AddString("listen", &o.listen,
                  "address of this worker's service (default 127.0.0.1:0, a free port)");
  flags.AddString("advertise-host", &o.advertise_host,
                  "host the router and other workers dial (default: the --listen host)");
  flags.AddString("id", &o.id, "worker id (default: its address)");
  flags.AddString("backend", &o.backend,
                  "cpu (default), or sim: the --profile's timing and power in place of the "
                  "forward pass, deterministic tokens, labelled backend=\"sim\"");
  flags.AddString("profile", &profile_path,
                  "hardware profile (tokenfab profile --out) a --backend sim worker plays");
  flags.AddString("transport", &o.transport,
                  "KV transport: tcp (default) or nccl (GPU workers: KV moves GPU to GPU)");
  flags.AddInt("nccl-max-peers", &o.nccl_max_peers,
               "with --transport nccl, NCCL communicators kept open each way (default 8); the "
               "least recently used idle one is closed for a new peer");
  flags.AddInt("kv-port", &o.kv_port,
               "port the tcp transport receives KV on (default 0, a free one; fix it where a "
               "firewall or NetworkPolicy lists ports)");
  flags.AddInt("metrics-port", &metrics_port,
               "Prometheus /metrics port (default: none; 0 picks one)");
  flags.AddInt("prefill-timeout-ms", &prefill_timeout_ms,
               "give up on a remote prefill after this long and compute it here (default 30000)");
  flags.AddInt("drain-timeout-s", &drain_timeout_s,
               "on SIGTERM, how long requests in flight may take to finish (default 60)");
  AddEngineFlags(flags, &engine, 1);
  AddPowerFlags(flags, &power);
  std::string cluster_key_file;
  AddClusterKeyFlag(flags, &cluster_key_file, /*serving=*/true);
  if (int rc = ParseFlagsOrExit(flags, "worker", args); rc >= 0) return rc;
  auto parsed_role = ParseRole(role);
  absl::Status check = parsed_role.status();
  if (check.ok()) check = CheckEngineFlags(engine);
  if (check.ok()) check = CheckPowerFlags(power);
  if (check.ok()) check = CheckRange("metrics-port", metrics_port, -1, 65535);
  if (check.ok()) check = CheckRange("kv-port", o.kv_port, 0, 65535);
  if (check.ok()) check = CheckRange("prefill-timeout-ms", prefill_timeout_ms, 1, 3600000);
  if (check.ok()) check = CheckRange("drain-timeout-s", drain_timeout_s, 0, 86400);
  if (check.ok()) check = ParseRouterList(o.router).status();
  if (check.ok()) {
    absl::StatusOr<KeySet> key = LoadClusterKey(cluster_key_file);
    check = key.status();
    if (key.ok()) o.cluster_key = *std::move(key);
  }
  if (!check.ok()) {
    ReportError("worker", check);
    return kExitUsage;
  }
  if (model_path.empty()) model_path = DefaultModelPath();
  const bool sim = o.backend == "sim";
  if (sim) {
    if (profile_path.empty()) {
      ReportError("worker", absl::InvalidArgumentError("--backend sim needs --profile PATH"));
      return kExitUsage;
    }
    auto profile = ReadProfile(profile_path);
    if (!profile.ok()) return ReportError("worker", profile.status());
    o.sim_profile = std::make_shared<const Profile>(std::move(*profile));
  } else if (!profile_path.empty()) {
    ReportError("worker", absl::InvalidArgumentError("--profile is for --backend sim"));
    return kExitUsage;
  }
  o.engine = engine.backend(flags.WasGiven("kv-cache-mb"));
  if (o.engine.device != "cpu" && o.backend == "cpu") o.backend = "cuda";
  o.role = *parsed_role;
  if (sim) {
    // The simulated machine's batch limits are the profiled engine's.
    o.engine.scheduler.max_num_seqs = o.sim_profile->max_num_seqs;
    o.engine.scheduler.max_batched_tokens = o.sim_profile->max_batched_tokens;
  }
  o.prefill_timeout = std::chrono::milliseconds(prefill_timeout_ms);
  o.power = power.options(o.engine.device);
  auto step_registry = std::make_shared<prometheus::Registry>();
  StepMetrics steps(*step_registry);
  o.on_step = steps.ForWorker("", o.backend);

  // A simulated worker needs the model's vocabulary and shapes, not its
  // weights.
  auto model = LoadModel(model_path, {.load_weights = !sim});
  if (!model.ok()) return ReportError("worker", model.status());
  auto node = WorkerNode::Start(**model, o);
  if (!node.ok()) return ReportError("worker", node.status());
  WorkerNode* raw = node->get();
  PrintPowerSource("worker", raw->energy().meter(), raw->power_fallback());
  std::unique_ptr<MetricsEndpoint> exposer;
  if (metrics_port >= 0) {
    WorkerSource source{.engine = &raw->engine(),
                        .transport = &raw->transport(),
                        .energy = &raw->energy(),
                        .model = ModelIdFor(model_path, ""),
                        .device = o.engine.device,
                        .backend = o.backend,
                        .role = [raw] { return std::string(RoleName(raw->role())); }};
    auto e = MetricsEndpoint::Start(
        metrics_host, metrics_port,
        {std::make_shared<WorkerMetrics>(std::vector<WorkerSource>{source}), step_registry,
         std::make_shared<AuthMetrics>(NamedKeySets{{"cluster_key", o.cluster_key}},
                                       WorkerLabels("", o.backend))});
    if (!e.ok()) return ReportError("worker", e.status());
    exposer = std::move(*e);
  }
  const std::string who = StrCat((*node)->id(), " (backend=", o.backend, ")");
  std::fprintf(stderr, "tokenfab worker %s: %s on %s, role %s, router %s, KV over %s at %s%s\n",
               who.c_str(), model_path.c_str(), (*node)->address().c_str(), role.c_str(),
               o.router.c_str(), std::string((*node)->transport().kind()).c_str(),
               (*node)->transport().endpoint().c_str(),
               exposer ? StrCat(", metrics on port ", exposer->port()).c_str() : "");
  std::fflush(stderr);

  // The waiting thread may outlive this function (it is detached), so it
  // shares what it uses.
  auto signalled = std::make_shared<absl::Notification>();
  auto keys = std::make_shared<KeyReloader>(StrCat("tokenfab worker ", (*node)->id()),
                                            std::vector<Reloadable>{o.cluster_key});
  std::thread([signals, signalled, keys] {
    WaitForSignal(signals, [&keys] { keys->ReloadNow(); });
    signalled->Notify();
  }).detach();
  while (!signalled->HasBeenNotified() && !(*node)->exit_requested().HasBeenNotified()) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  if (absl::Status refused = (*node)->exit_status(); !refused.ok()) {
    return ReportError("worker", refused);
  }
  std::fprintf(stderr, "tokenfab worker %s: draining\n", who.c_str());
  const bool drained = (*node)->Drain(absl::Seconds(drain_timeout_s));
  std::fprintf(stderr, "tokenfab worker %s: %s; exiting\n", who.c_str(),
               drained ? "every request finished" : "drain timed out, cancelling the rest");
  node->reset();
  return 0;
}

}  // namespace tokenfab
