#include "worker/cuda/nccl_transport.h"

#include <cuda_runtime_api.h>

#include <cstring>
#include <thread>

#include "common/strings.h"
#include "worker/cuda/cuda_status.h"
#include "worker/transport/kv_wire.h"

namespace tokenfab::cuda {
namespace {

// A piece larger than this for a transfer the receiver does not expect is a
// broken peer, not a layer of KV.
constexpr uint64_t kMaxDiscardBytes = uint64_t{1} << 34;

}  // namespace

struct NcclTransport::Expected : ExpectedKv {
  using ExpectedKv::ExpectedKv;
  std::shared_ptr<NcclChannel> channel;  // set by Route (under the transport's mu_)
};

absl::Status NcclTransport::Establish(NcclChannel& ch) {
  CUDA_RETURN_IF_ERROR(cudaSetDevice(options_.device));
  RETURN_IF_ERROR(SetUp(*api_, ch, options_.io_timeout_ms));
  absl::MutexLock lock(&ch.mu);
  ch.established = true;
  return absl::OkStatus();
}

void NcclTransport::SendLoop(const std::shared_ptr<NcclChannel>& ch) {
  absl::Status status = Establish(*ch);
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

void NcclTransport::ReceiveLoop(const std::shared_ptr<NcclChannel>& ch) {
  absl::Status status = Establish(*ch);
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
    status = ReceiveOne(*api_, *ch, ch->frame_d, nullptr, kFrameBytes, /*frame=*/true,
                        options_.io_timeout_ms);
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
        status = ReceiveOne(*api_, *ch, k, v, piece.payload_bytes / 2, /*frame=*/false,
                            options_.io_timeout_ms);
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
          auto kv = MakeDeviceReceivedKv(r.expected->spec, std::exchange(r.staging, nullptr),
                                         options_.device);
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
  std::vector<std::shared_ptr<NcclChannel>> channels;
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

std::shared_ptr<NcclChannel> NcclTransport::StartChannel(bool sender, uint64_t id,
                                                         const ncclUniqueId& unique_id,
                                                         std::string peer) {
  auto ch = std::make_shared<NcclChannel>();
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
  std::erase_if(all_, [](const std::shared_ptr<NcclChannel>& ch) {
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

void NcclTransport::Break(const std::shared_ptr<NcclChannel>& ch, const absl::Status& why) {
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
  std::shared_ptr<NcclChannel> ch;
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
  std::shared_ptr<NcclChannel> ch;
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
  std::shared_ptr<NcclChannel> ch;
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
    return MakeSendStream(nullptr, transfer, options_.device, failure);
  }
  SendItem open;
  open.transfer = transfer;
  open.kind = FrameKind::kOpen;
  absl::Status queued = ch->Enqueue(open);
  if (!queued.ok()) {
    return MakeSendStream(nullptr, transfer, options_.device, queued);
  }
  return MakeSendStream(ch, transfer, options_.device, absl::OkStatus());
}

KvTransportStats NcclTransport::Stats() const { return counters_->Snapshot(); }

int32_t NcclTransport::communicators() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int32_t>(receiving_.size() + sending_.size());
}

}  // namespace tokenfab::cuda
