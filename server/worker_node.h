// One worker: the model's engine with its KV transport and remote
// prefiller, the Worker gRPC service on its own port, and the Attach stream
// to each router. `tokenfab worker` runs one per process; `tokenfab serve
// --workers N` runs N in the router's process, over the same loopback gRPC
// and TCP paths.
//
// Drain: new calls are refused (the router stops routing here once the next
// load report says draining), calls in flight finish, then Drain returns.
#ifndef TOKENFAB_SERVER_WORKER_NODE_H_
#define TOKENFAB_SERVER_WORKER_NODE_H_

#include <chrono>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "scheduler/profile.h"
#include "server/auth.h"
#include "server/router_set.h"
#include "server/worker_service.h"
#include "worker/engine/backend.h"
#include "worker/engine/backend_factory.h"
#include "worker/engine/engine.h"
#include "worker/model_loader.h"
#include "worker/power/energy_monitor.h"
#include "worker/transport/kv_transport.h"
#include "worker/transport_prefiller.h"

namespace tokenfab {

class WorkerStubs;
class KvEventRelay;

struct WorkerNodeOptions {
  // The routers' internal address: HOST:PORT, a comma-separated list of
  // them, or a name resolving to several (router_set.h).
  std::string router;
  std::string id;      // default: the address it listens on
  internal::v1::WorkerRole role = internal::v1::WORKER_ROLE_BOTH;
  std::string listen = "127.0.0.1:0";  // the Worker service
  std::string advertise_host;          // what the router and peers dial (default: the listen host)
  // "cpu" (on --device cpu; "cuda" on a GPU), or "sim": the profile's
  // timing and power in place of the forward pass (sim_backend.h), with
  // the profile's KV blocks.
  std::string backend = "cpu";
  std::shared_ptr<const Profile> sim_profile;
  std::string transport = "tcp";  // or "nccl" (GPU workers)
  int32_t kv_port = 0;  // the tcp transport's listening port; 0 picks a free one
  int32_t nccl_max_peers = 8;  // the nccl transport's communicators each way
  // The forward pass's device ("cpu" or "cuda:N", the CUDA backend loaded
  // from its module), threads, KV cache and batch limits.
  DeviceBackendOptions engine;
  std::chrono::milliseconds prefill_timeout{30000};
  std::chrono::milliseconds report_interval{200};
  PowerOptions power;
  // Workers in this process on the same CPU package: a rapl reading is
  // split between them.
  int32_t power_sharers = 1;
  // Called on the engine thread after every step (step histograms).
  std::function<void(const StepRecord&)> on_step;
  // What the Worker service needs, and what this worker's calls to routers
  // and to other workers carry (auth.h).
  KeySet cluster_key;
};

class WorkerNode {
 public:
  // Checks the options, builds the engine over `model` (which must outlive
  // the node), starts serving and attaches to the router.
  static absl::StatusOr<std::unique_ptr<WorkerNode>> Start(const LoadedModel& model,
                                                           const WorkerNodeOptions& options);
  ~WorkerNode();

  const std::string& id() const { return id_; }
  const std::string& address() const { return address_; }
  std::string_view backend() const { return backend_->name(); }
  Engine& engine() { return *engine_; }
  const Engine& engine() const { return *engine_; }
  const KvTransport& transport() const { return *transport_; }
  EnergyMonitor& energy() { return *energy_; }
  // Why the power source is not the one "auto" would prefer (empty if it is).
  const std::string& power_fallback() const { return power_fallback_; }
  internal::v1::WorkerRole role() const { return routers_->role(); }
  // Whether any router has welcomed this worker.
  bool attached() const { return routers_->attached() > 0; }

  // Refuses new calls and tells the routers (the Worker service's Drain
  // call starts this too).
  void StartDraining();
  // StartDraining, then waits (up to `timeout`) until the calls in flight
  // have finished. True if they all did.
  bool Drain(absl::Duration timeout);

  // Notified when the process should drain and exit: the router ordered a
  // drain, or refused this worker (exit_status() then says why).
  absl::Notification& exit_requested() { return exit_requested_; }
  absl::Status exit_status() const;

 private:
  WorkerNode() = default;
  internal::v1::WorkerLoadReport LoadReport() const;
  // Notifies exit_requested() once; the first reason stands.
  void RequestExit(absl::Status why);

  std::string id_, address_;
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<KvTransport> transport_;
  std::shared_ptr<WorkerStubs> stubs_;
  std::unique_ptr<TransportPrefiller> prefiller_;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<EnergyMonitor> energy_;
  std::string power_fallback_;
  std::unique_ptr<WorkerService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<KvEventRelay> relay_;  // the engine's KV events -> routers_
  std::unique_ptr<RouterSet> routers_;
  absl::Notification exit_requested_;
  mutable absl::Mutex mu_;
  absl::Status exit_status_ ABSL_GUARDED_BY(mu_);
  bool running_ ABSL_GUARDED_BY(mu_) = false;  // Start finished, not being destroyed
  bool drain_announced_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace tokenfab

#endif  // TOKENFAB_SERVER_WORKER_NODE_H_
