// gRPC stubs for workers' Worker services, one channel per address, shared
// by the router's calls and a decode worker's Prefill calls; every call
// carries the cluster key, if there is one. Thread-safe.
#ifndef TOKENFAB_SERVER_WORKER_STUBS_H_
#define TOKENFAB_SERVER_WORKER_STUBS_H_

#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/grpcpp.h"
#include "server/auth.h"
#include "tokenfab/internal/v1/worker.grpc.pb.h"

namespace tokenfab {

class WorkerStubs {
 public:
  // `cluster_key`'s first key (auth.h) goes with every call; open: none.
  explicit WorkerStubs(KeySet cluster_key) : cluster_key_(std::move(cluster_key)) {}

  std::shared_ptr<internal::v1::Worker::Stub> Get(const std::string& address) {
    absl::MutexLock lock(&mu_);
    auto& stub = stubs_[address];
    if (stub == nullptr) {
      grpc::ChannelArguments args;
      // Reconnect fast after a worker restarts on the same address.
      args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
      args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
      stub = internal::v1::Worker::NewStub(KeyedChannel(address, cluster_key_, args));
    }
    return stub;
  }

 private:
  const KeySet cluster_key_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<internal::v1::Worker::Stub>> stubs_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace tokenfab

#endif  // TOKENFAB_SERVER_WORKER_STUBS_H_
