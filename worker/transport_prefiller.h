// The decode worker's RemotePrefiller over a KvTransport: for each job it
// registers a transfer with the transport, asks the prefill worker to
// compute and send (through `PrefillCall`, gRPC in the worker process, a
// direct engine call in tests) and hands the engine the KV once the
// transfer is complete, or the first error (transfer failed, prefill worker
// refused, gone or too slow), after which the engine computes the prompt
// itself. Thread-safe.
#ifndef TOKENFAB_WORKER_TRANSPORT_PREFILLER_H_
#define TOKENFAB_WORKER_TRANSPORT_PREFILLER_H_

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "worker/engine/engine.h"
#include "worker/engine/remote_prefiller.h"
#include "worker/transport/kv_transport.h"

namespace tokenfab {

class TransportPrefiller : public RemotePrefiller {
 public:
  // Sends `request` to the prefill worker `where` with a deadline; `reply`
  // runs once on any thread. Returns a function that cancels the call.
  using PrefillCall = std::function<std::function<void()>(
      const internal::v1::RemotePrefill& where, internal::v1::PrefillRequest request,
      std::chrono::system_clock::time_point deadline, std::function<void(absl::Status)> reply)>;

  // `transport` must outlive this. A remote prefill that has not delivered
  // within `timeout` is given up (the decode worker recomputes).
  TransportPrefiller(KvTransport* transport, PrefillCall call, std::chrono::milliseconds timeout);
  ~TransportPrefiller() override;  // aborts every job

  void Start(RemotePrefillJob job, Done done) override;
  void Abort(const std::string& request_id) override;

 private:
  struct Job;
  void Complete(const std::shared_ptr<Job>& job, absl::StatusOr<std::unique_ptr<ReceivedKv>> kv);

  KvTransport* transport_;
  PrefillCall call_;
  const std::chrono::milliseconds timeout_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<Job>> jobs_ ABSL_GUARDED_BY(mu_);
};

// The prefill worker's side of a PrefillRequest: checks it (transport kind,
// KV wire version), opens a send stream to the decode worker and has
// `engine` compute and push the KV. `reply` runs once, on an engine or
// transport thread, after the decode worker confirmed the whole transfer
// (or with the error). A request that cannot start is returned as an error
// and `reply` is not called. The engine id for cancelling is
// Engine::PrefillId(request.request_id()).
absl::Status ServePrefill(Engine& engine, KvTransport& transport,
                          const internal::v1::PrefillRequest& request,
                          std::function<void(absl::StatusOr<internal::v1::PrefillReply>)> reply);

}  // namespace tokenfab

#endif  // TOKENFAB_WORKER_TRANSPORT_PREFILLER_H_
