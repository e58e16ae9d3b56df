#include "worker/cuda/nccl_channel.h"

#include <cinttypes>
#include <cstdio>
#include <cstring>

#include "absl/strings/numbers.h"
#include "common/strings.h"
#include "worker/cuda/cuda_backend.h"
#include "worker/cuda/cuda_status.h"

namespace tokenfab::cuda {
namespace {

constexpr char kEndpointPrefix[] = "nccl:";

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

// Progress of the channel's stream and communicator. The timeout counts only
// while the channel is busy (or `always_counts`): an idle receiving channel
// waits for its sender to join as long as it takes.
class Waiter {
 public:
  Waiter(const NcclApi& api, NcclChannel& ch, int32_t timeout_ms)
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
  NcclChannel& ch_;
  const Clock::duration timeout_;
};

}  // namespace

absl::Status SetUp(const NcclApi& api, NcclChannel& ch, int32_t timeout_ms) {
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

void Quiesce(const NcclApi& api, NcclChannel& ch) {
  if (ch.comm != nullptr) api.CommAbort(ch.comm);
  ch.comm = nullptr;
  if (ch.stream != nullptr) cudaStreamSynchronize(ch.stream);
}

void TearDown(const NcclApi& api, NcclChannel& ch) {
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

namespace {

// Runs `ops` (NCCL sends or receives) as one group on the channel and waits
// until NCCL has taken them (a non-blocking communicator may still be busy).
template <typename F>
absl::Status Group(const NcclApi& api, NcclChannel& ch, int32_t timeout_ms, F ops) {
  api.GroupStart();
  const ncclResult_t r = ops();
  const ncclResult_t e = api.GroupEnd();
  if (r != ncclSuccess && r != ncclInProgress) return api.Error(r, ch.comm, "ncclSend/ncclRecv");
  if (e == ncclInProgress) return Waiter(api, ch, timeout_ms).Comm(/*always_counts=*/true);
  if (e != ncclSuccess) return api.Error(e, ch.comm, "ncclGroupEnd");
  return absl::OkStatus();
}

class NcclSendStream : public KvSendStream {
 public:
  NcclSendStream(std::shared_ptr<NcclChannel> ch, std::shared_ptr<SendTransfer> t, int32_t device,
                 absl::Status failure)
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
  const std::shared_ptr<NcclChannel> ch_;  // null when failure_ is set
  const std::shared_ptr<SendTransfer> transfer_;
  const int32_t device_;
  const absl::Status failure_;
  absl::Mutex mu_;
  bool terminal_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

std::string ChannelEndpoint(uint64_t id) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%s%016" PRIx64, kEndpointPrefix, id);
  return buf;
}

absl::StatusOr<uint64_t> ParseChannelEndpoint(const std::string& endpoint) {
  const size_t prefix = sizeof(kEndpointPrefix) - 1;
  uint64_t id = 0;
  if (endpoint.size() != prefix + 16 || endpoint.compare(0, prefix, kEndpointPrefix) != 0 ||
      !absl::SimpleHexAtoi(endpoint.substr(prefix), &id)) {
    return absl::InvalidArgumentError(
        StrCat("'", endpoint, "' is not an nccl KV endpoint (nccl:<16 hex digits>)"));
  }
  return id;
}

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

// Sends one item's frame and payload and waits until they are on their way.
absl::Status SendOne(const NcclApi& api, NcclChannel& ch, SendItem& item, int32_t timeout_ms) {
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

absl::Status ReceiveOne(const NcclApi& api, NcclChannel& ch, void* k, void* v, size_t half,
                        bool frame, int32_t timeout_ms) {
  RETURN_IF_ERROR(Group(api, ch, timeout_ms, [&] {
    ncclResult_t r = api.Recv(k, half, ncclUint8, /*peer=*/0, ch.comm, ch.stream);
    if (v != nullptr && (r == ncclSuccess || r == ncclInProgress)) {
      r = api.Recv(v, half, ncclUint8, 0, ch.comm, ch.stream);
    }
    return r;
  }));
  if (frame) {
    CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(ch.frame_h, ch.frame_d, kFrameBytes, cudaMemcpyDeviceToHost, ch.stream));
  }
  CUDA_RETURN_IF_ERROR(cudaEventRecord(ch.done, ch.stream));
  return Waiter(api, ch, timeout_ms).Event(ch.done, /*always_counts=*/true);
}

std::unique_ptr<KvSendStream> MakeSendStream(std::shared_ptr<NcclChannel> ch,
                                             std::shared_ptr<SendTransfer> transfer, int32_t device,
                                             absl::Status failure) {
  return std::make_unique<NcclSendStream>(std::move(ch), std::move(transfer), device,
                                          std::move(failure));
}

std::unique_ptr<ReceivedKv> MakeDeviceReceivedKv(const KvTransferSpec& spec, void* staging,
                                                 int32_t device) {
  return std::make_unique<DeviceReceivedKv>(spec, staging, device);
}

absl::StatusOr<std::vector<uint8_t>> ReceivedKvToHost(const ReceivedKv& kv) {
  if (auto* device = dynamic_cast<const DeviceReceivedKv*>(&kv); device != nullptr) {
    return device->ToHost();
  }
  return kv.bytes;
}

}  // namespace tokenfab::cuda
