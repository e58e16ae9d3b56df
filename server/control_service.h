// The router's internal port: WorkerControl.Attach (workers say hello,
// report load and KV events, and receive role changes and drain orders)
// and RouterAdmin (list workers, change a role, drain one). A worker whose
// stream ends, or that stays silent past the liveness limit (checked by a
// reaper thread), is removed from the cluster and `on_gone` is told, so its
// requests migrate.
//
// gRPC callback API: a bidi reactor per worker, one write in flight.
#ifndef TOKENFAB_SERVER_CONTROL_SERVICE_H_
#define TOKENFAB_SERVER_CONTROL_SERVICE_H_

#include <functional>
#include <string>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "grpcpp/grpcpp.h"
#include "scheduler/cluster.h"
#include "server/auth.h"
#include "tokenfab/internal/v1/control.grpc.pb.h"

namespace tokenfab {

class ControlService final : public internal::v1::WorkerControl::CallbackService {
 public:
  using GoneCallback = std::function<void(const std::string& worker_id)>;
  // Starts the reaper; `cluster` must outlive this. `on_tick` (optional)
  // runs on the reaper's thread after each check, every 200 ms.
  // Workers attach with the cluster key (auth.h; open: none needed).
  ControlService(Cluster* cluster, KeySet cluster_key, GoneCallback on_gone,
                 std::function<void()> on_tick = nullptr);
  ~ControlService() override;  // stops the reaper
  // This router process's id, sent in every welcome.
  uint64_t router_id() const { return router_id_; }

  grpc::ServerBidiReactor<internal::v1::WorkerReport, internal::v1::RouterOrder>* Attach(
      grpc::CallbackServerContext* context) override;

 private:
  void Reap();

  Cluster* cluster_;
  const KeySet cluster_key_;
  const uint64_t router_id_;
  GoneCallback on_gone_;
  std::function<void()> on_tick_;
  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread reaper_;
};

class AdminService final : public internal::v1::RouterAdmin::CallbackService {
 public:
  // Calls need the cluster key (auth.h; open: none needed).
  AdminService(Cluster* cluster, KeySet cluster_key)
      : cluster_(cluster), cluster_key_(std::move(cluster_key)) {}
  grpc::ServerUnaryReactor* ListWorkers(grpc::CallbackServerContext* context,
                                        const internal::v1::ListWorkersRequest* request,
                                        internal::v1::ListWorkersResponse* response) override;
  grpc::ServerUnaryReactor* SetWorkerRole(grpc::CallbackServerContext* context,
                                          const internal::v1::SetWorkerRoleRequest* request,
                                          internal::v1::SetWorkerRoleResponse* response) override;
  grpc::ServerUnaryReactor* DrainWorker(grpc::CallbackServerContext* context,
                                        const internal::v1::DrainWorkerRequest* request,
                                        internal::v1::DrainWorkerResponse* response) override;

 private:
  Cluster* cluster_;
  const KeySet cluster_key_;
};

}  // namespace tokenfab

#endif  // TOKENFAB_SERVER_CONTROL_SERVICE_H_
