// The worker's engine: one thread that runs the continuous-batching loop
// over a Backend. Requests arrive through Submit() from any thread; each step
// the loop admits and schedules sequences (BatchScheduler), runs one forward
// pass, samples, checks stop conditions and hands each request its new tokens
// through the request's callback, on the engine thread.
//
// Cancellation, a passed deadline or a client that went away (Cancel())
// frees the request's blocks at the next step.
#ifndef TOKENFAB_WORKER_ENGINE_ENGINE_H_
#define TOKENFAB_WORKER_ENGINE_ENGINE_H_

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "tokenfab/internal/v1/worker.pb.h"
#include "worker/engine/backend.h"
#include "worker/engine/batch_scheduler.h"
#include "worker/engine/block_pool.h"
#include "worker/engine/remote_prefiller.h"
#include "worker/transport/kv_transport.h"

namespace tokenfab {

// What one forward step did, for step histograms and energy attribution.
// A step that computed both prompt chunks and decodes is "mixed".
struct StepRecord {
  const char* phase = "decode";  // "prefill", "decode" or "mixed"
  double seconds = 0;            // schedule + forward + sampling
  int32_t sequences = 0;
  int64_t prefill_tokens = 0;
  int64_t decode_tokens = 0;
};

struct EngineOptions {
  SchedulerOptions scheduler;
  // Called on the engine thread after every step; must not block.
  std::function<void(const StepRecord&)> on_step;
  // Fetches prompts' KV from prefill workers for requests that carry a
  // remote_prefill; null computes every prompt here. Must outlive the engine.
  RemotePrefiller* remote_prefiller = nullptr;
};

// A consistent snapshot of the engine's state, for load reports and metrics.
struct EngineStats {
  int32_t running = 0;
  int32_t waiting = 0;
  int32_t kv_blocks_total = 0;
  int32_t kv_blocks_used = 0;
  int32_t kv_blocks_cached = 0;  // unreferenced blocks still holding a prefix
  int64_t steps = 0;
  int64_t prefill_tokens = 0;
  int64_t decode_tokens = 0;
  int64_t preemptions = 0;
  int64_t prefix_queries = 0;  // blocks looked up in the prefix cache
  int64_t prefix_hits = 0;
  int64_t pending_prefill_tokens = 0;  // prompt tokens admitted, not yet computed
  int64_t remote_prefills_ok = 0;      // prompts whose KV came from a prefill worker
  int64_t remote_prefills_failed = 0;  // ... that fell back to computing here
  int64_t kv_exports = 0;              // prompts computed here for a decode worker
  // Seconds the engine spent stepping, by phase. A mixed step's time is split
  // by its share of prompt and decode tokens (each token costs about the
  // same weight FLOPs); the rest of the wall time the engine was idle.
  double prefill_busy_seconds = 0;
  double decode_busy_seconds = 0;
};

class Engine {
 public:
  using OutputCallback = std::function<void(const internal::v1::WorkerOutput&)>;
  using KvEventCallback = std::function<void(std::vector<internal::v1::KvEvent>)>;

  // `backend` must outlive the engine; its KV cache is the engine's pool.
  // `on_kv_events` (optional) receives the prefix cache's changes after each
  // step, on the engine thread.
  Engine(Backend* backend, const EngineOptions& options, KvEventCallback on_kv_events = nullptr);
  ~Engine();  // finishes every request as cancelled, then stops the thread

  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Queues a request. InvalidArgument for one that can never run (empty or
  // out-of-vocabulary prompt, no room in the context or the KV pool),
  // AlreadyExists for a request id in use, ResourceExhausted when the queue
  // is full. Any thread.
  absl::Status Submit(internal::v1::WorkerRequest request, OutputCallback on_output);

  // Prefill side of disaggregation: computes the KV of `request.token_ids`
  // (reusing this worker's prefix cache) and pushes positions from
  // `request.send_from` to `sink` as prefill chunks complete. `on_output`
  // gets one final output: LENGTH when every piece was pushed (the caller
  // then finishes the stream), CANCELLED or ERROR otherwise. The engine's id
  // for it is PrefillId(request.request_id()). Same errors as Submit.
  absl::Status SubmitPrefill(const internal::v1::PrefillRequest& request,
                             std::shared_ptr<KvSendStream> sink, OutputCallback on_output);
  static std::string PrefillId(const std::string& request_id) { return "prefill:" + request_id; }

  // Stops a request at the next step (it finishes with CANCELLED). Any thread.
  void Cancel(const std::string& request_id);

  EngineStats Stats() const;
  KvLayout kv_layout() const { return backend_->kv_layout(); }

 private:
  struct Incoming {
    internal::v1::WorkerRequest request;
    OutputCallback on_output;
    std::shared_ptr<KvSendStream> kv_export;
    int32_t export_from = 0;
  };
  struct KvArrival {
    std::string request_id;
    uint64_t generation;
    absl::StatusOr<std::unique_ptr<ReceivedKv>> kv;
  };
  struct Emit {
    OutputCallback* callback;
    internal::v1::WorkerOutput output;
  };

  void Loop();
  // One iteration; false when there was nothing to do.
  bool Step();
  absl::Status CheckAndQueue(internal::v1::WorkerRequest request, OutputCallback on_output,
                             std::shared_ptr<KvSendStream> kv_export, int32_t export_from);
  void TakeIncoming();
  void StartRemotePrefills();
  void ApplyArrival(KvArrival arrival);
  // Pushes `layer`'s KV of positions [first, first + count) of a
  // prefill-for-export sequence to its stream.
  void ExportLayer(Sequence* seq, int32_t layer, int32_t first, int32_t count);
  void FinishCancelled();
  void Finish(Sequence* seq, internal::v1::WorkerFinish reason, internal::v1::WorkerOutput* out,
              const std::string& error = "");
  void Deliver();
  void PublishStats();

  Backend* backend_;
  const EngineOptions options_;
  KvEventCallback on_kv_events_;
  const int32_t context_length_;
  const int32_t vocab_size_;

  // Engine thread only.
  BlockPool pool_;
  BatchScheduler scheduler_;
  absl::flat_hash_map<std::string, Sequence*> by_id_;
  std::vector<std::unique_ptr<Sequence>> finished_;  // kept until their outputs are delivered
  std::vector<Emit> emits_;
  uint64_t next_arrival_ = 0;
  StepResult step_result_;
  std::vector<DeviceSampling> device_sampling_;  // this step's, for a device-sampling backend

  mutable absl::Mutex mu_;
  std::vector<Incoming> incoming_ ABSL_GUARDED_BY(mu_);
  std::vector<KvArrival> arrivals_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<std::string> cancels_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<std::string> active_ids_ ABSL_GUARDED_BY(mu_);
  int32_t queued_ ABSL_GUARDED_BY(mu_) = 0;  // incoming + waiting, for the queue limit
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  EngineStats stats_ ABSL_GUARDED_BY(mu_);
  // The step running now, counted in Stats()' busy seconds as it goes.
  bool step_running_ ABSL_GUARDED_BY(mu_) = false;
  std::chrono::steady_clock::time_point current_step_start_ ABSL_GUARDED_BY(mu_);
  double current_step_prefill_share_ ABSL_GUARDED_BY(mu_) = 0;

  std::thread thread_;
};

}  // namespace tokenfab

#endif  // TOKENFAB_WORKER_ENGINE_ENGINE_H_
