// The worker's gRPC face (tokenfab.internal.v1.Worker), for the router and
// for decode workers: Generate streams one request's outputs from the
// engine (cancelling the call cancels the request); Prefill computes a
// prompt's KV and sends it over the KV transport to the decode worker that
// asked. Once draining, new calls are refused with UNAVAILABLE so the
// router sends them elsewhere; calls in flight go on. Drain starts that
// (through `on_drain`, which tells the routers) and reports what is left.
//
// gRPC callback API: no reaction blocks; engine outputs are queued and
// written one at a time.
#ifndef TOKENFAB_SERVER_WORKER_SERVICE_H_
#define TOKENFAB_SERVER_WORKER_SERVICE_H_

#include <atomic>
#include <functional>

#include "grpcpp/grpcpp.h"
#include "server/auth.h"
#include "tokenfab/internal/v1/worker.grpc.pb.h"
#include "worker/engine/engine.h"
#include "worker/transport/kv_transport.h"

namespace tokenfab {

class WorkerService final : public internal::v1::Worker::CallbackService {
 public:
  // `engine` and `transport` must outlive the service's server. `on_drain`
  // (any thread, maybe more than once) starts the drain.
  // Calls need the cluster key (auth.h; open: none needed).
  WorkerService(Engine* engine, KvTransport* transport, std::function<void()> on_drain,
                KeySet cluster_key)
      : engine_(engine),
        transport_(transport),
        on_drain_(std::move(on_drain)),
        cluster_key_(std::move(cluster_key)) {}

  grpc::ServerWriteReactor<internal::v1::WorkerOutput>* Generate(
      grpc::CallbackServerContext* context, const internal::v1::WorkerRequest* request) override;
  grpc::ServerUnaryReactor* Prefill(grpc::CallbackServerContext* context,
                                    const internal::v1::PrefillRequest* request,
                                    internal::v1::PrefillReply* reply) override;
  grpc::ServerUnaryReactor* Drain(grpc::CallbackServerContext* context,
                                  const internal::v1::DrainRequest* request,
                                  internal::v1::DrainReply* reply) override;

  void StartDraining() { draining_ = true; }
  bool draining() const { return draining_; }
  // Generate and Prefill calls not yet done.
  int32_t calls_in_flight() const { return in_flight_; }

  struct Counter {
    explicit Counter(std::atomic<int32_t>* n) : n_(n) { ++*n_; }
    ~Counter() { --*n_; }
    std::atomic<int32_t>* n_;
  };

 private:
  Engine* engine_;
  KvTransport* transport_;
  const std::function<void()> on_drain_;
  const KeySet cluster_key_;
  std::atomic<bool> draining_{false};
  std::atomic<int32_t> in_flight_{0};
};

}  // namespace tokenfab

#endif  // TOKENFAB_SERVER_WORKER_SERVICE_H_
