#include "worker/cuda/nccl_transport.h"

#include <cuda_runtime_api.h>

#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <deque>
#include <thread>

#include "common/strings.h"
#include "worker/cuda/cuda_backend.h"
#include "worker/cuda/cuda_status.h"
#include "worker/cuda/device_buffer.h"
#include "worker/transport/kv_wire.h"

namespace tokenfab::cuda {
namespace {

using Clock = std::chrono::steady_clock;
constexpr char kEndpointPrefix[] = "nccl:";
// A piece larger than this for a transfer the receiver does not expect is a
// broken peer, not a layer of KV.
constexpr uint64_t kMaxDiscardBytes = uint64_t{1} << 34;

int64_t MicrosSince(Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count();
}

std::string ChannelEndpoint(uint64_t id) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%s%016" PRIx64, kEndpointPrefix, id);
  return buf;
}

absl::StatusOr<uint64_t> ParseChannelEndpoint(const std::string& endpoint) {
  const size_t prefix = sizeof(kEndpointPrefix) - 1;
  if (endpoint.size() != prefix + 16 || endpoint.compare(0, prefix, kEndpointPrefix) != 0) {
    return absl::InvalidArgumentError(
        StrCat("'", endpoint, "' is not an nccl KV endpoint (nccl:<16 hex digits>)"));
  }
  uint64_t id = 0;
  for (size_t i = prefix; i < endpoint.size(); ++i) {
    const char c = endpoint[i];
    const int digit = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (digit < 0) {
      return absl::InvalidArgumentError(StrCat("'", endpoint, "' is not an nccl KV endpoint"));
    }
    id = id << 4 | static_cast<uint64_t>(digit);
  }
  return id;
}

// A transfer received over NCCL: in device memory until the engine scatters
// it into its blocks.
class DeviceReceivedKv : public ReceivedKv {
 public:
  DeviceReceivedKv(const KvTransferSpec& s, void* staging, int32_t device)
      : staging_(staging), device_(device) {
    spec = s;
  }
  ~DeviceReceivedKv() override {
    int current = -1;
    cudaGetDevice(&current);
    cudaSetDevice(device_);
    cudaFreeAsync(staging_, cudaStreamPerThread);
    if (current >= 0 && current != device_) cudaSetDevice(current);
  }

  absl::Status WriteTo(Backend& backend, std::span<const int32_t> block_table) const override {
    auto* cuda = dynamic_cast<CudaBackend*>(&backend);
    if (cuda == nullptr || cuda->device() != device_) {
      return absl::FailedPreconditionError(
          StrCat("KV received over NCCL on cuda:", device_, " goes into that GPU's cuda backend"));
    }
    for (int32_t l = 0; l < spec.layout.num_layers; ++l) {
      RETURN_IF_ERROR(
          cuda->UnpackKv(l, block_table, spec.first_position, spec.positions(),
                         static_cast<const uint8_t*>(staging_) + l * spec.LayerBytes()));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<uint8_t>> ToHost() const {
    std::vector<uint8_t> out(static_cast<size_t>(spec.TotalBytes()));
    CUDA_RETURN_IF_ERROR(cudaSetDevice(device_));
    CUDA_RETURN_IF_ERROR(cudaMemcpy(out.data(), staging_, out.size(), cudaMemcpyDeviceToHost));
    return out;
  }

 private:
  void* staging_;
  int32_t device_;
};

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
void Drop(SendItem& item) {
  if (item.ready != nullptr) {
    cudaEventSynchronize(item.ready);
    cudaEventDestroy(item.ready);
    item.ready = nullptr;
  }
  if (item.payload != nullptr) {
    cudaFreeAsync(item.payload, cudaStreamPerThread);
    item.payload = nullptr;
  }
}

}  // namespace

absl::StatusOr<std::vector<uint8_t>> ReceivedKvToHost(const ReceivedKv& kv) {
  if (auto* device = dynamic_cast<const DeviceReceivedKv*>(&kv); device != nullptr) {
    return device->ToHost();
  }
  return kv.bytes;
}

struct NcclTransport::Expected : ExpectedKv {
  using ExpectedKv::ExpectedKv;
  std::shared_ptr<Channel> channel;  // set by Route (under the transport's mu_)
};

struct NcclTransport::Channel {
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

namespace {

// Progress of the channel's stream and communicator. The timeout counts only
// while the channel is busy (or `always_counts`): an idle receiving channel
// waits for its sender to join as long as it takes.
class Waiter {
 public:
  Waiter(const NcclApi& api, NcclTransport::Channel& ch, int32_t timeout_ms)
      : api_(api), ch_(ch), timeout_(std::chrono::milliseconds(timeout_ms)) {}

  // Until `event` on the channel's stream has completed.
  absl::Status Event(cudaEvent_t event, bool always_counts) {
    return Poll(always_counts, [&]() -> absl::StatusOr<bool> {
      const cudaError_t q = cudaEventQuery(event);
      if (q == cudaSuccess) return true;
      if (q != cudaErrorNotReady) return CudaStatus(q, "NCCL transfer");
      RETURN_IF_ERROR(CommState().status());
      return false;
    });
  }
  // Until the communicator is no longer ncclInProgress (set-up, group end).
  absl::Status Comm(bool always_counts) {
    return Poll(always_counts, [&]() -> absl::StatusOr<bool> { return CommState(); });
  }

 private:
  absl::StatusOr<bool> CommState() {
    ncclResult_t r = ncclSuccess;
    const ncclResult_t q = api_.CommGetAsyncError(ch_.comm, &r);
    if (q != ncclSuccess) return api_.Error(q, ch_.comm, "ncclCommGetAsyncError");
    if (r == ncclInProgress) return false;
    if (r != ncclSuccess) return api_.Error(r, ch_.comm, "NCCL");
    return true;
  }

  template <typename F>
  absl::Status Poll(bool always_counts, F done) {
    Clock::time_point progress = Clock::now();
    for (;;) {
      ASSIGN_OR_RETURN(const bool finished, done());
      if (finished) return absl::OkStatus();
      bool idle;
      {
        absl::MutexLock lock(&ch_.mu);
        if (ch_.closing) return ch_.failure;
        idle = !always_counts && ch_.Idle();
      }
      if (idle) {
        progress = Clock::now();
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
        continue;
      }
      if (Clock::now() - progress > timeout_) {
        return absl::DeadlineExceededError(
            StrCat("no KV progress over NCCL for ",
                   std::chrono::duration_cast<std::chrono::milliseconds>(timeout_).count(), " ms"));
      }
      std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
  }

  const NcclApi& api_;
  NcclTransport::Channel& ch_;
  const Clock::duration timeout_;
};

// Creates the channel's stream and buffers and joins its communicator.
absl::Status SetUp(const NcclApi& api, NcclTransport::Channel& ch, int32_t timeout_ms) {
  CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&ch.stream, cudaStreamNonBlocking));
  CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&ch.done, cudaEventDisableTiming));
  // Stream-ordered: a plain cudaMalloc would wait for every kernel on the
  // GPU, NCCL's of other pairs included.
  CUDA_RETURN_IF_ERROR(cudaMallocAsync(&ch.frame_d, kFrameBytes, ch.stream));
  CUDA_RETURN_IF_ERROR(cudaMallocHost(reinterpret_cast<void**>(&ch.frame_h), kFrameBytes));
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;  // set-up and operations can be given up (ncclCommAbort)
  const ncclResult_t r =
      api.CommInitRankConfig(&ch.comm, 2, ch.unique_id, ch.sender ? 0 : 1, &config);
  if (r != ncclSuccess && r != ncclInProgress) {
    return api.Error(r, ch.comm, "ncclCommInitRankConfig");
  }
  // A receiving channel waits for its sender only while a transfer needs it.
  return Waiter(api, ch, timeout_ms).Comm(/*always_counts=*/ch.sender);
}

// Aborts the communicator (which ends operations still posted) and waits
// for the channel's stream: nothing of the channel's runs on the GPU after.
void Quiesce(const NcclApi& api, NcclTransport::Channel& ch) {
  if (ch.comm != nullptr) api.CommAbort(ch.comm);
  ch.comm = nullptr;
  if (ch.stream != nullptr) cudaStreamSynchronize(ch.stream);
}

void TearDown(const NcclApi& api, NcclTransport::Channel& ch) {
  Quiesce(api, ch);
  if (ch.frame_d != nullptr) cudaFreeAsync(ch.frame_d, ch.stream);
  if (ch.stream != nullptr) cudaStreamSynchronize(ch.stream);
  if (ch.frame_h != nullptr) cudaFreeHost(ch.frame_h);
  if (ch.done != nullptr) cudaEventDestroy(ch.done);
  if (ch.stream != nullptr) cudaStreamDestroy(ch.stream);
  ch.frame_d = nullptr;
  ch.frame_h = nullptr;
  ch.done = nullptr;
  ch.stream = nullptr;
}

// Runs `ops` (NCCL sends or receives) as one group on the channel and waits
// until NCCL has taken them (a non-blocking communicator may still be busy).
template <typename F>
absl::Status Group(const NcclApi& api, NcclTransport::Channel& ch, int32_t timeout_ms, F ops) {
  api.GroupStart();
  const ncclResult_t r = ops();
  const ncclResult_t e = api.GroupEnd();
  if (r != ncclSuccess && r != ncclInProgress) return api.Error(r, ch.comm, "ncclSend/ncclRecv");
  if (e == ncclInProgress) return Waiter(api, ch, timeout_ms).Comm(/*always_counts=*/true);
  if (e != ncclSuccess) return api.Error(e, ch.comm, "ncclGroupEnd");
  return absl::OkStatus();
}

}  // namespace

// --- sending -------------------------------------------------------------------

namespace {

class NcclSendStream : public KvSendStream {
 public:
  NcclSendStream(std::shared_ptr<NcclTransport::Channel> ch, std::shared_ptr<SendTransfer> t,
                 int32_t device, absl::Status failure)
      : ch_(std::move(ch)),
        transfer_(std::move(t)),
        device_(device),
        failure_(std::move(failure)) {}
  ~NcclSendStream() override { Abort(); }  // a stream dropped unfinished fails the receiver

  absl::Status PushSlice(const Backend& backend, const KvSlice& slice) override {
    if (!failure_.ok()) return failure_;
    auto* cuda = dynamic_cast<const CudaBackend*>(&backend);
    if (cuda == nullptr || cuda->device() != device_) {
      return absl::FailedPreconditionError(
          StrCat("--transport nccl on cuda:", device_, " moves the KV of that GPU's cuda backend"));
    }
    SendItem item;
    item.transfer = transfer_;
    item.kind = FrameKind::kPiece;
    item.piece = {slice.layer, slice.first_position, slice.count,
                  static_cast<uint64_t>(transfer_->spec.layout.PositionBytes()) *
                      static_cast<uint64_t>(slice.count)};
    CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&item.ready, cudaEventDisableTiming));
    absl::StatusOr<void*> packed = cuda->PackKv(slice, item.ready);
    if (!packed.ok()) {
      cudaEventDestroy(item.ready);
      return packed.status();
    }
    item.payload = *packed;
    return Enqueue(item);
  }

  void Push(KvPiece piece) override {
    if (!failure_.ok()) return;
    if (piece.count <= 0 || piece.bytes.size() != static_cast<size_t>(piece.count) *
                                                      transfer_->spec.layout.PositionBytes()) {
      Abort();  // not a piece of this transfer: the receiver fails it
      return;
    }
    SendItem item;
    item.transfer = transfer_;
    item.kind = FrameKind::kPiece;
    item.piece = {piece.layer, piece.first_position, piece.count, piece.bytes.size()};
    item.host = std::move(piece.bytes);
    Enqueue(item).IgnoreError();  // a closed channel shows in Finish
  }

  void Finish(std::function<void(absl::Status)> done) override {
    {
      absl::MutexLock lock(&mu_);
      if (terminal_) {
        done(absl::FailedPreconditionError("the KV send stream was already finished or aborted"));
        return;
      }
      terminal_ = true;
    }
    if (!failure_.ok()) {
      done(failure_);
      return;
    }
    SendItem item;
    item.transfer = transfer_;
    item.kind = FrameKind::kEnd;
    item.done = done;
    if (absl::Status s = ch_->Enqueue(item); !s.ok()) done(s);
  }

  // After Finish this does nothing (the end frame is queued behind the
  // pieces), so dropping a finished stream does not cut its transfer short.
  void Abort() override {
    {
      absl::MutexLock lock(&mu_);
      if (terminal_) return;
      terminal_ = true;
    }
    transfer_->aborted = true;  // pieces not yet sent are dropped
    if (!failure_.ok()) return;
    SendItem item;
    item.transfer = transfer_;
    item.kind = FrameKind::kAbort;
    ch_->Enqueue(item).IgnoreError();
  }

  absl::Status Enqueue(SendItem& item) {
    absl::Status s = ch_->Enqueue(item);
    if (!s.ok()) Drop(item);
    return s;
  }

 private:
  const std::shared_ptr<NcclTransport::Channel> ch_;  // null when failure_ is set
  const std::shared_ptr<SendTransfer> transfer_;
  const int32_t device_;
  const absl::Status failure_;
  absl::Mutex mu_;
  bool terminal_ ABSL_GUARDED_BY(mu_) = false;
};

// Sends one item's frame and payload and waits until they are on their way.
absl::Status SendOne(const NcclApi& api, NcclTransport::Channel& ch, SendItem& item,
                     int32_t timeout_ms) {
  const uint64_t id = item.transfer->spec.transfer_id;
  const std::array<uint8_t, kFrameBytes> frame =
      item.kind == FrameKind::kOpen    ? EncodeOpenFrame(item.transfer->spec)
      : item.kind == FrameKind::kPiece ? EncodePieceFrame(id, item.piece)
                                       : EncodeFrame(item.kind, id);
  std::memcpy(ch.frame_h, frame.data(), kFrameBytes);
  CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(ch.frame_d, ch.frame_h, kFrameBytes, cudaMemcpyHostToDevice, ch.stream));
  if (!item.host.empty()) {
    CUDA_RETURN_IF_ERROR(cudaMallocAsync(&item.payload, item.host.size(), ch.stream));
    CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(item.payload, item.host.data(), item.host.size(),
                                         cudaMemcpyHostToDevice, ch.stream));
  }
  if (item.ready != nullptr) CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(ch.stream, item.ready, 0));
  RETURN_IF_ERROR(Group(api, ch, timeout_ms, [&] {
    return api.Send(ch.frame_d, kFrameBytes, ncclUint8, /*peer=*/1, ch.comm, ch.stream);
  }));
  if (item.payload != nullptr && item.piece.payload_bytes > 0) {
    const size_t half = item.piece.payload_bytes / 2;
    const auto* k = static_cast<const uint8_t*>(item.payload);
    RETURN_IF_ERROR(Group(api, ch, timeout_ms, [&] {
      ncclResult_t r = api.Send(k, half, ncclUint8, 1, ch.comm, ch.stream);
      if (r == ncclSuccess || r == ncclInProgress) {
        r = api.Send(k + half, half, ncclUint8, 1, ch.comm, ch.stream);
      }
      return r;
    }));
  }
  if (item.payload != nullptr) {
    CUDA_RETURN_IF_ERROR(cudaFreeAsync(item.payload, ch.stream));
    item.payload = nullptr;
  }
  CUDA_RETURN_IF_ERROR(cudaEventRecord(ch.done, ch.stream));
  RETURN_IF_ERROR(Waiter(api, ch, timeout_ms).Event(ch.done, /*always_counts=*/true));
  if (item.ready != nullptr) {
    cudaEventDestroy(item.ready);
    item.ready = nullptr;
  }
  return absl::OkStatus();
}

}  // namespace

void NcclTransport::SendLoop(const std::shared_ptr<Channel>& ch) {
  absl::Status status = CudaStatus(cudaSetDevice(options_.device), "cudaSetDevice");
  if (status.ok()) status = SetUp(*api_, *ch, options_.io_timeout_ms);
  if (status.ok()) {
    absl::MutexLock lock(&ch->mu);
    ch->established = true;
  }
  while (status.ok()) {
    SendItem item;
    {
      absl::MutexLock lock(&ch->mu);
      while (ch->queue.empty() && !ch->closing) ch->cv.Wait(&ch->mu);
      if (ch->closing) break;
      item = std::move(ch->queue.front());
      ch->queue.pop_front();
    }
    const bool terminal = item.kind == FrameKind::kEnd || item.kind == FrameKind::kAbort;
    if (item.transfer->aborted && item.kind == FrameKind::kPiece) {
      Drop(item);
      continue;
    }
    if (item.transfer->aborted && item.kind == FrameKind::kEnd) item.kind = FrameKind::kAbort;
    status = SendOne(*api_, *ch, item, options_.io_timeout_ms);
    if (!status.ok()) {
      Quiesce(*api_, *ch);  // its payload may still be read by what was posted
      Drop(item);
      if (item.done) item.done(absl::AbortedError(status.message()));
      break;
    }
    if (item.kind == FrameKind::kPiece) {
      counters_->bytes_sent += static_cast<int64_t>(item.piece.payload_bytes);
    }
    if (item.done) {
      if (item.kind == FrameKind::kEnd) {
        ++counters_->transfers_sent;
        counters_->micros_sent += MicrosSince(item.transfer->started);
        item.done(absl::OkStatus());
      } else {
        ++counters_->transfers_failed;
        item.done(absl::CancelledError("the KV transfer was aborted"));
      }
    }
    if (terminal) {
      absl::MutexLock lock(&ch->mu);
      --ch->busy;
    }
  }
  if (status.ok()) status = absl::CancelledError("the NCCL communicator was closed");
  Break(ch, status);
  status = absl::AbortedError(status.message());
  Quiesce(*api_, *ch);
  std::deque<SendItem> left;
  {
    absl::MutexLock lock(&ch->mu);
    left.swap(ch->queue);
  }
  for (SendItem& item : left) {
    Drop(item);
    if (item.done) {
      ++counters_->transfers_failed;
      item.done(status);
    }
  }
  TearDown(*api_, *ch);
}

// --- receiving -----------------------------------------------------------------

namespace {

// A transfer the receiving thread is assembling; `expected` is null when it
// is no longer wanted (its payloads go to scratch).
struct Receiving {
  std::shared_ptr<NcclTransport::Expected> expected;
  std::unique_ptr<KvAssembly> assembly;
  void* staging = nullptr;
  Clock::time_point started = Clock::now();
};

}  // namespace

void NcclTransport::ReceiveLoop(const std::shared_ptr<Channel>& ch) {
  absl::Status status = CudaStatus(cudaSetDevice(options_.device), "cudaSetDevice");
  if (status.ok()) status = SetUp(*api_, *ch, options_.io_timeout_ms);
  if (status.ok()) {
    absl::MutexLock lock(&ch->mu);
    ch->established = true;
  }
  absl::flat_hash_map<uint64_t, Receiving> active;
  auto fail = [&](Receiving& r, const absl::Status& why) {
    if (r.staging != nullptr) cudaFreeAsync(r.staging, ch->stream);
    r.staging = nullptr;
    if (r.expected == nullptr) return;
    std::shared_ptr<Expected> e = Claim(r.expected->spec.transfer_id);
    r.expected = nullptr;
    if (e == nullptr) return;
    ++counters_->transfers_failed;
    e->Deliver(why);
  };
  // Receives `half` bytes into `k` (and as many into `v`, if given), then,
  // for a frame, copies it to the host.
  auto receive = [&](void* k, void* v, size_t half, bool frame) -> absl::Status {
    RETURN_IF_ERROR(Group(*api_, *ch, options_.io_timeout_ms, [&] {
      ncclResult_t r = api_->Recv(k, half, ncclUint8, /*peer=*/0, ch->comm, ch->stream);
      if (v != nullptr && (r == ncclSuccess || r == ncclInProgress)) {
        r = api_->Recv(v, half, ncclUint8, 0, ch->comm, ch->stream);
      }
      return r;
    }));
    if (frame) {
      CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(ch->frame_h, ch->frame_d, kFrameBytes,
                                           cudaMemcpyDeviceToHost, ch->stream));
    }
    CUDA_RETURN_IF_ERROR(cudaEventRecord(ch->done, ch->stream));
    return Waiter(*api_, *ch, options_.io_timeout_ms).Event(ch->done, /*always_counts=*/true);
  };

  while (status.ok()) {
    // A receive stays posted (a kernel waiting on the GPU) only while frames
    // are due: a transfer routed here has not ended, or one is still open.
    {
      absl::MutexLock lock(&ch->mu);
      while (!ch->closing && ch->Idle() && active.empty()) ch->cv.Wait(&ch->mu);
      if (ch->closing) {
        status = ch->failure;
        break;
      }
    }
    status = receive(ch->frame_d, nullptr, kFrameBytes, /*frame=*/true);
    if (!status.ok()) break;
    absl::StatusOr<Frame> frame = DecodeFrame(ch->frame_h);
    if (!frame.ok()) {
      status = frame.status();
      break;
    }
    const uint64_t id = frame->transfer_id;
    auto it = active.find(id);
    switch (frame->kind) {
      case FrameKind::kOpen: {
        if (it != active.end()) {
          status = absl::InvalidArgumentError(StrCat("KV transfer ", id, " opened twice"));
          break;
        }
        Receiving r;
        {
          absl::MutexLock lock(&mu_);
          auto e = expected_.find(id);
          if (e != expected_.end() && e->second->channel == ch) r.expected = e->second;
        }
        if (r.expected != nullptr) {
          absl::Status s = CheckStreamHeader(frame->body.data(), r.expected->spec);
          if (s.ok()) {
            r.assembly = std::make_unique<KvAssembly>(r.expected->spec, /*host_bytes=*/false);
            s = CudaStatus(
                cudaMallocAsync(&r.staging, static_cast<size_t>(r.expected->spec.TotalBytes()),
                                ch->stream),
                "KV staging");
          }
          if (!s.ok()) fail(r, s);
        }
        active.emplace(id, std::move(r));
        break;
      }
      case FrameKind::kPiece: {
        const PieceHeader piece = DecodePieceHeader(frame->body.data());
        void* k = nullptr;
        void* v = nullptr;
        if (it != active.end() && it->second.expected != nullptr) {
          Receiving& r = it->second;
          if (absl::Status s = r.assembly->Accept(piece); s.ok()) {
            k = static_cast<uint8_t*>(r.staging) + r.assembly->KOffset(piece);
            v = static_cast<uint8_t*>(r.staging) + r.assembly->VOffset(piece);
          } else {
            fail(r, s);
          }
        }
        if (piece.payload_bytes % 2 != 0 || piece.payload_bytes > kMaxDiscardBytes) {
          status = absl::InvalidArgumentError(
              StrCat("a KV piece of ", piece.payload_bytes, " bytes from the sender"));
          break;
        }
        if (piece.payload_bytes == 0) break;  // the sender sends no halves either
        void* scratch = nullptr;              // for a transfer no longer wanted: read and dropped
        if (k == nullptr) {
          status = CudaStatus(cudaMallocAsync(&scratch, piece.payload_bytes / 2, ch->stream),
                              "KV scratch");
          if (!status.ok()) break;
          k = v = scratch;
        }
        status = receive(k, v, piece.payload_bytes / 2, /*frame=*/false);
        if (scratch != nullptr) cudaFreeAsync(scratch, ch->stream);
        if (status.ok()) counters_->bytes_received += static_cast<int64_t>(piece.payload_bytes);
        break;
      }
      case FrameKind::kEnd:
      case FrameKind::kAbort: {
        {
          absl::MutexLock lock(&ch->mu);
          ch->due.erase(id);
        }
        if (it == active.end()) break;  // never opened here
        Receiving& r = it->second;
        if (r.expected != nullptr && frame->kind == FrameKind::kAbort) {
          fail(r, absl::UnavailableError("the prefill worker gave up the KV transfer"));
        } else if (r.expected != nullptr && !r.assembly->Complete()) {
          fail(r, absl::DataLossError("the KV transfer ended before every layer arrived"));
        } else if (r.expected != nullptr) {
          std::shared_ptr<Expected> e = Claim(id);
          auto kv = std::make_unique<DeviceReceivedKv>(
              r.expected->spec, std::exchange(r.staging, nullptr), options_.device);
          if (e != nullptr) {
            ++counters_->transfers_received;
            counters_->micros_received += MicrosSince(r.started);
            e->Deliver(std::move(kv));
          }
        }
        if (r.staging != nullptr) cudaFreeAsync(r.staging, ch->stream);
        active.erase(it);
        break;
      }
    }
  }
  for (auto& [id, r] : active) fail(r, status);
  Break(ch, status);
  TearDown(*api_, *ch);
}

// --- the transport ---------------------------------------------------------------

absl::StatusOr<std::unique_ptr<NcclTransport>> NcclTransport::Create(
    const NcclTransportOptions& options) {
  if (options.max_peers < 1 || options.max_peers > 1024) {
    return absl::InvalidArgumentError(
        StrCat("the NCCL peer limit must be 1 to 1024, got ", options.max_peers));
  }
  if (options.io_timeout_ms < 1) {
    return absl::InvalidArgumentError("the NCCL transfer timeout must be positive");
  }
  ASSIGN_OR_RETURN(const NcclApi* api, NcclApi::Load());
  int count = 0;
  CUDA_RETURN_IF_ERROR(cudaGetDeviceCount(&count));
  if (options.device < 0 || options.device >= count) {
    return absl::InvalidArgumentError(
        StrCat("cuda:", options.device, " does not exist (", count, " GPUs)"));
  }
  return std::unique_ptr<NcclTransport>(new NcclTransport(options, api));
}

NcclTransport::NcclTransport(const NcclTransportOptions& options, const NcclApi* api)
    : options_(options),
      api_(api),
      endpoint_(StrCat("cuda:", options.device, ", NCCL ", api->version / 10000, ".",
                       api->version / 100 % 100, ".", api->version % 100, ", up to ",
                       options.max_peers, " peers each way")) {}

NcclTransport::~NcclTransport() {
  std::vector<std::shared_ptr<Channel>> channels;
  std::vector<std::shared_ptr<Expected>> expected;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    channels = all_;
    for (auto& [id, e] : expected_) expected.push_back(e);
    expected_.clear();
  }
  const absl::Status stop = absl::UnavailableError("the KV transport is shutting down");
  for (auto& ch : channels) ch->Close(stop);
  for (auto& e : expected) e->Deliver(stop);
  for (auto& ch : channels) ch->thread.join();
}

std::shared_ptr<NcclTransport::Channel> NcclTransport::StartChannel(bool sender, uint64_t id,
                                                                    const ncclUniqueId& unique_id,
                                                                    std::string peer) {
  auto ch = std::make_shared<Channel>();
  ch->sender = sender;
  ch->id = id;
  ch->unique_id = unique_id;
  ch->peer = std::move(peer);
  all_.push_back(ch);
  ch->thread = std::thread([this, ch] {
    if (ch->sender) {
      SendLoop(ch);
    } else {
      ReceiveLoop(ch);
    }
    absl::MutexLock lock(&ch->mu);
    ch->exited = true;
  });
  return ch;
}

void NcclTransport::JoinExited() {
  std::erase_if(all_, [](const std::shared_ptr<Channel>& ch) {
    bool exited;
    {
      absl::MutexLock lock(&ch->mu);
      exited = ch->exited;
    }
    if (exited) ch->thread.join();
    return exited;
  });
}

template <typename Map>
bool NcclTransport::MakeRoom(Map& by_key) {
  for (auto it = by_key.begin(); it != by_key.end();) {
    bool closing;
    {
      absl::MutexLock lock(&it->second->mu);
      closing = it->second->closing;
    }
    if (closing) {
      by_key.erase(it++);
    } else {
      ++it;
    }
  }
  if (static_cast<int32_t>(by_key.size()) < options_.max_peers) return true;
  auto victim = by_key.end();
  for (auto it = by_key.begin(); it != by_key.end(); ++it) {
    absl::MutexLock lock(&it->second->mu);
    if (it->second->Idle() &&
        (victim == by_key.end() || it->second->last_used < victim->second->last_used)) {
      victim = it;
    }
  }
  if (victim == by_key.end()) return false;
  victim->second->Close(absl::CancelledError("the NCCL communicator was the least recently used"));
  by_key.erase(victim);
  return true;
}

void NcclTransport::Break(const std::shared_ptr<Channel>& ch, const absl::Status& why) {
  ch->Close(why);
  std::vector<std::shared_ptr<Expected>> orphans;
  {
    absl::MutexLock lock(&mu_);
    if (auto it = receiving_.find(ch->peer);
        !ch->sender && it != receiving_.end() && it->second == ch) {
      receiving_.erase(it);
    }
    if (auto it = sending_.find(ch->id); ch->sender && it != sending_.end() && it->second == ch) {
      sending_.erase(it);
    }
    for (auto it = expected_.begin(); it != expected_.end();) {
      if (it->second->channel == ch) {
        orphans.push_back(std::move(it->second));
        expected_.erase(it++);
      } else {
        ++it;
      }
    }
  }
  for (auto& e : orphans) {
    ++counters_->transfers_failed;
    e->Deliver(why);
  }
}

std::shared_ptr<NcclTransport::Expected> NcclTransport::Claim(uint64_t transfer_id) {
  std::shared_ptr<Expected> e;
  {
    absl::MutexLock lock(&mu_);
    auto it = expected_.find(transfer_id);
    if (it == expected_.end()) return nullptr;
    e = std::move(it->second);
    expected_.erase(it);
  }
  return e;
}

absl::Status NcclTransport::Expect(const KvTransferSpec& spec, Arrival on_arrival) {
  RETURN_IF_ERROR(CheckTransferSpec(spec));
  auto e = std::make_shared<Expected>(spec, std::move(on_arrival));
  absl::MutexLock lock(&mu_);
  return AddExpected(expected_, stopping_, std::move(e));
}

absl::StatusOr<KvRoute> NcclTransport::Route(const std::string& sender, uint64_t transfer_id) {
  absl::MutexLock lock(&mu_);
  if (stopping_) return absl::UnavailableError("the KV transport is shutting down");
  JoinExited();
  auto e = expected_.find(transfer_id);
  if (e == expected_.end()) {
    return absl::FailedPreconditionError(StrCat("KV transfer ", transfer_id, " is not expected"));
  }
  std::shared_ptr<Channel> ch;
  if (auto it = receiving_.find(sender); it != receiving_.end()) {
    absl::MutexLock channel_lock(&it->second->mu);
    if (!it->second->closing) ch = it->second;
  }
  if (ch == nullptr) {
    receiving_.erase(sender);
    if (!MakeRoom(receiving_)) {
      return absl::ResourceExhaustedError(
          StrCat("all ", options_.max_peers, " NCCL communicators from prefill workers are busy"));
    }
    ncclUniqueId unique_id;
    if (ncclResult_t r = api_->GetUniqueId(&unique_id); r != ncclSuccess) {
      return api_->Error(r, nullptr, "ncclGetUniqueId");
    }
    ch = StartChannel(/*sender=*/false, ids_(), unique_id, sender);
    receiving_[sender] = ch;
  }
  ch->last_used = ++tick_;
  e->second->channel = ch;
  KvRoute route{ChannelEndpoint(ch->id), ""};
  absl::MutexLock channel_lock(&ch->mu);
  ch->due.insert(transfer_id);
  ch->cv.SignalAll();  // the receiving thread posts its next receive
  // The sender joins with the id until the pair is set up (it ignores the
  // id for a communicator it already has).
  if (!ch->established) route.bootstrap.assign(ch->unique_id.internal, NCCL_UNIQUE_ID_BYTES);
  return route;
}

void NcclTransport::Forget(uint64_t transfer_id) {
  if (std::shared_ptr<Expected> e = Claim(transfer_id); e != nullptr) e->Silence();
}

void NcclTransport::Failed(uint64_t transfer_id, const absl::Status& why) {
  std::shared_ptr<Channel> ch;
  {
    absl::MutexLock lock(&mu_);
    if (auto it = expected_.find(transfer_id); it != expected_.end()) ch = it->second->channel;
  }
  Forget(transfer_id);
  // The sender's communicator failed or is gone (its failures are Aborted,
  // and the Prefill call carries the code back): set up a new pair with
  // the next transfer. Other failures (the prefill worker busy, draining,
  // the call's deadline) leave the pair as it is; frames still due for
  // this transfer are read and dropped.
  if (ch != nullptr && why.code() == absl::StatusCode::kAborted) {
    Break(ch, absl::UnavailableError(
                  StrCat("a remote prefill over this communicator failed: ", why.message())));
  }
}

std::unique_ptr<KvSendStream> NcclTransport::Open(const KvRoute& route,
                                                  const KvTransferSpec& spec) {
  auto transfer = std::make_shared<SendTransfer>();
  transfer->spec = spec;
  std::shared_ptr<Channel> ch;
  absl::Status failure;
  absl::StatusOr<uint64_t> id = ParseChannelEndpoint(route.endpoint);
  if (!id.ok()) {
    failure = id.status();
  } else if (!route.bootstrap.empty() && route.bootstrap.size() != NCCL_UNIQUE_ID_BYTES) {
    failure = absl::InvalidArgumentError(StrCat("an NCCL bootstrap id of ", route.bootstrap.size(),
                                                " bytes, not ", NCCL_UNIQUE_ID_BYTES));
  } else {
    absl::MutexLock lock(&mu_);
    if (stopping_) {
      failure = absl::UnavailableError("the KV transport is shutting down");
    } else {
      JoinExited();
      if (auto it = sending_.find(*id); it != sending_.end()) {
        absl::MutexLock channel_lock(&it->second->mu);
        if (!it->second->closing) ch = it->second;
      }
      if (ch == nullptr) {
        sending_.erase(*id);
        if (route.bootstrap.empty()) {
          failure =
              absl::AbortedError(StrCat("no NCCL communicator ", route.endpoint,
                                        " here (torn down); the decode worker sets up a new one"));
        } else if (!MakeRoom(sending_)) {
          failure = absl::ResourceExhaustedError(
              StrCat("all ", options_.max_peers, " NCCL communicators to decode workers are busy"));
        } else {
          ncclUniqueId unique_id;
          std::memcpy(unique_id.internal, route.bootstrap.data(), NCCL_UNIQUE_ID_BYTES);
          ch = StartChannel(/*sender=*/true, *id, unique_id, "");
          sending_[*id] = ch;
        }
      }
      if (ch != nullptr) {
        ch->last_used = ++tick_;
        absl::MutexLock channel_lock(&ch->mu);
        ++ch->busy;
      }
    }
  }
  if (ch == nullptr) {
    ++counters_->transfers_failed;
    return std::make_unique<NcclSendStream>(nullptr, transfer, options_.device, failure);
  }
  SendItem open;
  open.transfer = transfer;
  open.kind = FrameKind::kOpen;
  absl::Status queued = ch->Enqueue(open);
  if (!queued.ok()) {
    return std::make_unique<NcclSendStream>(nullptr, transfer, options_.device, queued);
  }
  return std::make_unique<NcclSendStream>(ch, transfer, options_.device, absl::OkStatus());
}

KvTransportStats NcclTransport::Stats() const { return counters_->Snapshot(); }

int32_t NcclTransport::communicators() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int32_t>(receiving_.size() + sending_.size());
}

}  // namespace tokenfab::cuda
