// A router: the public faces (Frontend) over the request path (Router),
// routing across the workers that attach to its internal port (Cluster,
// ClusterWorkerClient, ControlService, AdminService). `tokenfab router`
// runs one; `tokenfab serve --workers N` runs one with N WorkerNodes in the
// same process.
#ifndef TOKENFAB_SERVER_ROUTER_NODE_H_
#define TOKENFAB_SERVER_ROUTER_NODE_H_

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "grpcpp/grpcpp.h"
#include "prometheus/registry.h"
#include "scheduler/cluster.h"
#include "server/auth.h"
#include "server/cluster_worker_client.h"
#include "server/control_service.h"
#include "server/frontend.h"
#include "server/planner_loop.h"
#include "server/request_metrics.h"
#include "server/router.h"
#include "worker/model_loader.h"

namespace tokenfab {

struct RouterNodeOptions {
  FrontendOptions frontend;
  std::string model_id;
  std::string internal_host = "0.0.0.0";
  int32_t internal_port = 50052;  // 0 picks one
  RoutingOptions routing;
  // The planner runs when a profile is given (--planner-profile).
  std::optional<Profile> planner_profile;
  PlannerLoopOptions planner;
  // What the internal port needs, and what the router's calls to workers
  // carry (auth.h).
  KeySet cluster_key;
};

class RouterNode {
 public:
  // `model` (tokenizer and template are enough) must outlive the node.
  static absl::StatusOr<std::unique_ptr<RouterNode>> Start(
      const LoadedModel& model, const RouterNodeOptions& options,
      std::vector<std::shared_ptr<prometheus::Collectable>> extra_metrics = {});
  ~RouterNode();

  Frontend& frontend() { return *frontend_; }
  int internal_port() const { return internal_port_; }
  Cluster& cluster() { return *cluster_; }
  // Null when the planner is off.
  PlannerLoop* planner() { return planner_.get(); }
  // Stops the public faces (requests in flight are cancelled after 2 s).
  void Shutdown();

 private:
  RouterNode() = default;
  std::shared_ptr<prometheus::Registry> request_registry_;
  std::unique_ptr<RequestMetrics> request_metrics_;
  std::unique_ptr<Cluster> cluster_;
  std::shared_ptr<WorkerStubs> stubs_;
  std::unique_ptr<ClusterWorkerClient> client_;
  std::unique_ptr<LoadObserver> load_;
  std::unique_ptr<Router> router_;
  std::unique_ptr<ControlService> control_;
  std::unique_ptr<AdminService> admin_;
  std::unique_ptr<grpc::Server> internal_;
  int internal_port_ = 0;
  std::shared_ptr<PlannerLoop> planner_;
  std::unique_ptr<Frontend> frontend_;
  std::atomic<Frontend*> serving_frontend_{nullptr};  // set once frontend_ is up
};

}  // namespace tokenfab

#endif  // TOKENFAB_SERVER_ROUTER_NODE_H_
