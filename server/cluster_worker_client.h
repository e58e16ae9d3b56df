// The router's WorkerClient over a cluster of remote workers: routes each
// request (Cluster::Route: decode worker, and a prefill worker when the
// prompt is disaggregated), streams it from the decode worker over gRPC,
// and keeps the client's stream going when a worker fails: a call that ends
// without a finish (worker killed, expired, refusing) is re-submitted to
// another worker with the prompt plus the tokens generated so far and the
// remaining max_tokens (request migration). Greedy output is unchanged by a
// migration (the engine is exact); usage still counts the original prompt.
//
// Thread-safe. Outputs of one request reach its callback in order, on gRPC
// threads.
#ifndef TOKENFAB_SERVER_CLUSTER_WORKER_CLIENT_H_
#define TOKENFAB_SERVER_CLUSTER_WORKER_CLIENT_H_

#include <atomic>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "scheduler/cluster.h"
#include "scheduler/worker_client.h"
#include "server/worker_stubs.h"

namespace tokenfab {

struct ClusterClientOptions {
  int32_t block_size = 16;
  int32_t max_attempts = 4;  // first try plus migrations
};

class ClusterWorkerClient : public WorkerClient {
 public:
  ClusterWorkerClient(Cluster* cluster, std::shared_ptr<WorkerStubs> stubs,
                      ClusterClientOptions options = {});
  ~ClusterWorkerClient() override;  // cancels what is in flight and waits for it

  // Unavailable: no decode worker attached; ResourceExhausted: all full.
  absl::Status Submit(internal::v1::WorkerRequest request, OutputCallback on_output) override;
  void Cancel(const std::string& request_id) override;
  WorkerLoad Load() const override;
  bool Ready() const override { return cluster_->HasDecodeWorker(); }

  // The worker left (its attach stream ended or it went silent): its
  // requests migrate.
  void WorkerGone(const std::string& worker_id);

  int64_t migrations() const { return migrations_; }
  int32_t in_flight() const;

  struct Request;
  class Call;

 private:
  friend class Call;
  // Routes the next attempt and makes it r's call; the caller holds r->mu
  // and starts the call after releasing it (gRPC may react inline).
  absl::StatusOr<Call*> NextAttempt(const std::shared_ptr<Request>& r);
  void StartCall(Call* call);
  void OnOutput(Call* call, internal::v1::WorkerOutput out);
  void OnCallDone(Call* call, const absl::Status& status);
  void Forget(const std::string& id);

  Cluster* cluster_;
  std::shared_ptr<WorkerStubs> stubs_;
  const ClusterClientOptions options_;
  std::atomic<int64_t> migrations_{0};

  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<Request>> requests_ ABSL_GUARDED_BY(mu_);
  int32_t calls_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace tokenfab

#endif  // TOKENFAB_SERVER_CLUSTER_WORKER_CLIENT_H_
