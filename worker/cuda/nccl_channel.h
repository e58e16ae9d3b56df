// One NCCL communicator between a prefill worker (rank 0, sending) and a
// decode worker (rank 1, receiving), as the nccl transport's thread for it
// drives it: the channel's state, set-up and tear-down, waiting on the GPU
// with a timeout, one frame (and its payload) sent or received, and the
// send stream and received transfer the transport hands out. The transport
// (nccl_transport.h) keeps the channels, routes transfers to them and runs
// their threads.
#ifndef TOKENFAB_WORKER_CUDA_NCCL_CHANNEL_H_
#define TOKENFAB_WORKER_CUDA_NCCL_CHANNEL_H_

#include <cuda_runtime_api.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/strings.h"
#include "worker/cuda/nccl_api.h"
#include "worker/transport/kv_transport.h"
#include "worker/transport/kv_wire.h"

namespace tokenfab::cuda {

using Clock = std::chrono::steady_clock;

inline int64_t MicrosSince(Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count();
}

// A channel's endpoint in a KvRoute: "nccl:" and its id in 16 hex digits.
std::string ChannelEndpoint(uint64_t id);
absl::StatusOr<uint64_t> ParseChannelEndpoint(const std::string& endpoint);

struct SendTransfer {
  KvTransferSpec spec;
  Clock::time_point started = Clock::now();
  std::atomic<bool> aborted{false};
};

// One unit of the sending thread's work: a frame, with a piece's payload.
struct SendItem {
  std::shared_ptr<SendTransfer> transfer;
  FrameKind kind = FrameKind::kOpen;
  PieceHeader piece;
  void* payload = nullptr;                 // device memory (PushSlice), freed once sent
  cudaEvent_t ready = nullptr;             // when `payload` is packed
  std::vector<uint8_t> host;               // or host memory (Push)
  std::function<void(absl::Status)> done;  // kEnd
};

// Frees what an item holds without sending it.
void Drop(SendItem& item);

// One communicator, one direction. Its thread (the transport's SendLoop or
// ReceiveLoop) alone touches the NCCL and CUDA handles; the rest is shared
// under `mu`.
struct NcclChannel {
  bool sender = false;
  uint64_t id = 0;
  ncclUniqueId unique_id{};
  std::string peer;       // receiving: the sending worker's address
  int64_t last_used = 0;  // under the transport's mu_
  std::thread thread;

  absl::Mutex mu;
  absl::CondVar cv;
  bool established ABSL_GUARDED_BY(mu) = false;
  bool closing ABSL_GUARDED_BY(mu) = false;
  bool exited ABSL_GUARDED_BY(mu) = false;
  absl::Status failure ABSL_GUARDED_BY(mu);
  std::deque<SendItem> queue ABSL_GUARDED_BY(mu);
  // Sending: streams not yet finished or aborted. Receiving: transfers
  // routed here whose end or abort frame has not come (frames come for
  // every transfer the sender opened, wanted here or not). Only an idle
  // channel is evicted; a receiving one posts receives only while not idle.
  int32_t busy ABSL_GUARDED_BY(mu) = 0;
  absl::flat_hash_set<uint64_t> due ABSL_GUARDED_BY(mu);
  bool Idle() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return sender ? busy == 0 : due.empty(); }

  // The channel's thread only.
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;
  cudaEvent_t done = nullptr;
  void* frame_d = nullptr;
  uint8_t* frame_h = nullptr;

  // Takes `item` unless the channel is closing (then it is left as it was).
  absl::Status Enqueue(SendItem& item) {
    absl::MutexLock lock(&mu);
    if (closing) return failure;
    queue.push_back(std::move(item));
    cv.Signal();
    return absl::OkStatus();
  }
  // Every failure that comes from the channel is Aborted: the pair must be
  // set up again (the decode worker tears its side down on seeing it).
  void Close(const absl::Status& why) {
    absl::MutexLock lock(&mu);
    if (closing) return;
    closing = true;
    failure =
        absl::AbortedError(StrCat("NCCL communicator ", ChannelEndpoint(id), ": ", why.message()));
    cv.SignalAll();
  }
};

// Creates the channel's stream and buffers and joins its communicator.
absl::Status SetUp(const NcclApi& api, NcclChannel& ch, int32_t timeout_ms);
// Aborts the communicator (which ends operations still posted) and waits
// for the channel's stream: nothing of the channel's runs on the GPU after.
void Quiesce(const NcclApi& api, NcclChannel& ch);
// Quiesce, then frees the stream and buffers.
void TearDown(const NcclApi& api, NcclChannel& ch);

// Sends one item's frame and payload and waits until they are on their way.
absl::Status SendOne(const NcclApi& api, NcclChannel& ch, SendItem& item, int32_t timeout_ms);
// Receives `half` bytes into `k` (and as many into `v`, if given) and waits
// for them; for a frame (into ch.frame_d) also copies it to ch.frame_h.
absl::Status ReceiveOne(const NcclApi& api, NcclChannel& ch, void* k, void* v, size_t half,
                        bool frame, int32_t timeout_ms);

// The sending stream of one transfer over `ch` (null, with `failure`, for
// a transfer that cannot be sent).
std::unique_ptr<KvSendStream> MakeSendStream(std::shared_ptr<NcclChannel> ch,
                                             std::shared_ptr<SendTransfer> transfer, int32_t device,
                                             absl::Status failure);
// A transfer received into `staging` (device memory, owned from now on) on
// GPU `device`; WriteTo scatters it into a cuda backend's blocks there.
std::unique_ptr<ReceivedKv> MakeDeviceReceivedKv(const KvTransferSpec& spec, void* staging,
                                                 int32_t device);
// The bytes of a received transfer in host memory, wherever it was received
// (tests and benchmarks).
absl::StatusOr<std::vector<uint8_t>> ReceivedKvToHost(const ReceivedKv& kv);

}  // namespace tokenfab::cuda

#endif  // TOKENFAB_WORKER_CUDA_NCCL_CHANNEL_H_
