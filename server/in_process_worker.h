// The worker of `tokenfab serve`: the router's WorkerClient over an engine in
// the same process, so router and engine meet only at the WorkerClient
// interface and its proto messages, as they will across processes.
#ifndef TOKENFAB_SERVER_IN_PROCESS_WORKER_H_
#define TOKENFAB_SERVER_IN_PROCESS_WORKER_H_

#include "scheduler/worker_client.h"
#include "worker/engine/engine.h"

namespace tokenfab {

class InProcessWorker : public WorkerClient {
 public:
  explicit InProcessWorker(Engine* engine) : engine_(engine) {}

  absl::Status Submit(internal::v1::WorkerRequest request, OutputCallback on_output) override {
    return engine_->Submit(std::move(request), std::move(on_output));
  }
  void Cancel(const std::string& request_id) override { engine_->Cancel(request_id); }
  WorkerLoad Load() const override {
    const EngineStats s = engine_->Stats();
    return {s.running, s.waiting, s.kv_blocks_total, s.kv_blocks_used};
  }

 private:
  Engine* engine_;
};

}  // namespace tokenfab

#endif  // TOKENFAB_SERVER_IN_PROCESS_WORKER_H_
