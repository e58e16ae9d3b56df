// The router's handle on a worker: where a checked, tokenized request goes
// and where its token stream comes back from. The in-process worker of
// `tokenfab serve` implements it directly over the engine; a remote worker
// implements it over gRPC. The router never sees engine internals.
#ifndef TOKENFAB_SCHEDULER_WORKER_CLIENT_H_
#define TOKENFAB_SCHEDULER_WORKER_CLIENT_H_

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "tokenfab/internal/v1/worker.pb.h"

namespace tokenfab {

// What the router sees of a worker's load.
struct WorkerLoad {
  int32_t running = 0;  // sequences in the running batch
  int32_t waiting = 0;  // admitted, not yet running
  int32_t kv_blocks_total = 0;
  int32_t kv_blocks_used = 0;  // referenced by a sequence
};

class WorkerClient {
 public:
  // Called on a worker-owned thread, in order, for each output of one
  // request; the last call has a finish reason. Must not block.
  using OutputCallback = std::function<void(const internal::v1::WorkerOutput&)>;

  virtual ~WorkerClient() = default;

  // Queues `request`. ResourceExhausted when the worker's queue is full
  // (nothing is queued then); InvalidArgument for a request the worker
  // cannot run. On success `on_output` will be called until a finish.
  virtual absl::Status Submit(internal::v1::WorkerRequest request, OutputCallback on_output) = 0;

  // Asks the worker to stop a request; it finishes with CANCELLED at its next
  // step (or immediately if it already finished, nothing happens). Any thread.
  virtual void Cancel(const std::string& request_id) = 0;

  virtual WorkerLoad Load() const = 0;

  // Whether a request submitted now has a worker to run on (health checks).
  virtual bool Ready() const { return true; }
};

}  // namespace tokenfab

#endif  // TOKENFAB_SCHEDULER_WORKER_CLIENT_H_
