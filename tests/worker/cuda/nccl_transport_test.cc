// The nccl KV transport. On one GPU: NCCL loads, a communicator is set up,
// and KV blocks packed on the GPU (CudaBackend::PackKv) go through an NCCL
// send/receive and are scattered into another backend's blocks
// (UnpackKv) bit for bit. On two GPUs: the whole transport between two
// workers' GPUs, the pair's communicator reused, an aborted and a stale
// transfer failing on both sides, the least recently used communicator
// closed for a new peer, and a prefill's KV from one backend's blocks into
// another's. Skipped, with the reason, where the GPUs or NCCL are missing
// (NCCL refuses two ranks of one communicator on one GPU, so the pair
// tests need two).
#include "worker/cuda/nccl_transport.h"

#include <cuda_runtime_api.h>

#include <numeric>

#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/test_paths.h"
#include "tests/worker/cuda/gpu_test_util.h"
#include "tests/worker/transport/kv_test_util.h"
#include "worker/cuda/cuda_backend.h"
#include "worker/model_loader.h"

namespace tokenfab::cuda {
namespace {

using testing::DefaultModel;

std::unique_ptr<CudaBackend> MakeCuda(int32_t device) {
  const LoadedModel* m = DefaultModel();
  if (m == nullptr) return nullptr;
  CudaBackendOptions o;
  o.device = device;
  o.num_kv_blocks = 64;
  o.max_batched_tokens = 256;
  o.max_num_seqs = 8;
  o.cuda_graphs = false;
  auto b = CudaBackend::Create(m->config, m->weights, o);
  EXPECT_TRUE(b.ok()) << b.status();
  return b.ok() ? std::move(*b) : nullptr;
}

std::vector<int32_t> Blocks(int32_t first, int32_t count) {
  std::vector<int32_t> b(count);
  std::iota(b.begin(), b.end(), first);
  return b;
}

// Prefills `n` tokens into `table` of `b`.
void Prefill(CudaBackend& b, const std::vector<int32_t>& table, int32_t n) {
  std::vector<int32_t> ids;
  for (int32_t i = 0; i < n; ++i) ids.push_back((i * 104729 + 11) % b.config().vocab_size);
  const SequenceStep step{ids, 0, table, LogitsMode::kNone};
  StepResult r;
  ASSERT_TRUE(b.Forward({&step, 1}, &r).ok());
}

std::vector<uint8_t> Read(const Backend& b, int32_t layer, const std::vector<int32_t>& table,
                          int32_t first, int32_t count) {
  std::vector<uint8_t> out(b.kv_layout().PositionBytes() * count);
  EXPECT_TRUE(b.ReadKv(layer, table, first, count, out).ok());
  return out;
}

// Skips unless NCCL loads and `gpus` GPUs are visible.
#define REQUIRE_GPUS_AND_NCCL(gpus)                                                       \
  do {                                                                                    \
    TOKENFAB_REQUIRE_GPU();                                                               \
    int count_ = 0;                                                                       \
    cudaGetDeviceCount(&count_);                                                          \
    if (count_ < (gpus)) {                                                                \
      GTEST_SKIP() << count_ << " GPU visible; a pair of NCCL ranks needs " << (gpus)     \
                   << " (NCCL refuses two ranks of one communicator on one GPU)";         \
    }                                                                                     \
    if (auto api_ = NcclApi::Load(); !api_.ok()) GTEST_SKIP() << api_.status().message(); \
  } while (0)

TEST(NcclTransportTest, PackedBlocksGoThroughAOneRankCommunicatorIntoOtherBlocks) {
  REQUIRE_GPUS_AND_NCCL(1);
  const NcclApi* api = *NcclApi::Load();
  auto a = MakeCuda(0), b = MakeCuda(0);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  const std::vector<int32_t> ta = Blocks(0, 3), tb = Blocks(40, 3);
  Prefill(*a, ta, 40);

  ncclUniqueId id;
  ASSERT_EQ(api->GetUniqueId(&id), ncclSuccess);
  ncclComm_t comm = nullptr;
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;  // blocking: set-up returns when done
  ASSERT_EQ(api->CommInitRankConfig(&comm, 1, id, 0, &config), ncclSuccess);
  cudaStream_t stream;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  // Positions 5..34: they start and end inside blocks, so packing gathers
  // from three blocks and unpacking scatters into three others.
  const int32_t first = 5, count = 30;
  const size_t bytes = a->kv_layout().PositionBytes() * count;
  void* received = nullptr;
  ASSERT_EQ(cudaMalloc(&received, bytes), cudaSuccess);
  for (int32_t l = 0; l < a->kv_layout().num_layers; ++l) {
    SCOPED_TRACE(::testing::Message() << "layer " << l);
    cudaEvent_t ready;
    ASSERT_EQ(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming), cudaSuccess);
    absl::StatusOr<void*> packed = a->PackKv({l, ta, first, count}, ready);
    ASSERT_TRUE(packed.ok()) << packed.status();
    ASSERT_EQ(cudaStreamWaitEvent(stream, ready, 0), cudaSuccess);
    ASSERT_EQ(api->GroupStart(), ncclSuccess);
    ASSERT_EQ(api->Send(*packed, bytes, ncclUint8, 0, comm, stream), ncclSuccess);
    ASSERT_EQ(api->Recv(received, bytes, ncclUint8, 0, comm, stream), ncclSuccess);
    ASSERT_EQ(api->GroupEnd(), ncclSuccess);
    ASSERT_EQ(cudaFreeAsync(*packed, stream), cudaSuccess);
    ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
    cudaEventDestroy(ready);
    ASSERT_TRUE(b->UnpackKv(l, tb, first, count, received).ok());
    EXPECT_EQ(Read(*a, l, ta, first, count), Read(*b, l, tb, first, count));
  }
  // Slices outside the cache are refused before anything is packed.
  cudaEvent_t ready;
  ASSERT_EQ(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming), cudaSuccess);
  EXPECT_EQ(a->PackKv({a->kv_layout().num_layers, ta, 0, 1}, ready).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(a->PackKv({0, ta, 40, 9}, ready).status().code(), absl::StatusCode::kInvalidArgument);
  const std::vector<int32_t> unknown = {99999};
  EXPECT_EQ(b->UnpackKv(0, unknown, 0, 1, received).code(), absl::StatusCode::kInvalidArgument);
  cudaEventDestroy(ready);
  cudaFree(received);
  cudaStreamDestroy(stream);
  api->CommAbort(comm);
}

using tokenfab::testing::ExpectInto;
using tokenfab::testing::FinishInto;
using tokenfab::testing::PatternPiece;
using Outcome = tokenfab::testing::KvOutcome;

KvTransferSpec Spec(uint64_t id, int32_t first, int32_t end) {
  return tokenfab::testing::KvSpec(id, first, end, KvDType::kBF16);
}

std::unique_ptr<NcclTransport> Make(int32_t device, int32_t max_peers = 8) {
  NcclTransportOptions o;
  o.device = device;
  o.max_peers = max_peers;
  o.io_timeout_ms = 20000;
  auto t = NcclTransport::Create(o);
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? std::move(*t) : nullptr;
}

TEST(NcclTransportTest, TransfersBetweenTwoGpusShareThePairsCommunicator) {
  REQUIRE_GPUS_AND_NCCL(2);
  auto tx = Make(0), rx = Make(1);
  ASSERT_NE(tx, nullptr);
  ASSERT_NE(rx, nullptr);
  for (uint64_t id : {1, 2}) {
    SCOPED_TRACE(::testing::Message() << "transfer " << id);
    const KvTransferSpec spec = Spec(id, 4, 20);
    Outcome o;
    ExpectInto(*rx, spec, &o);
    absl::StatusOr<KvRoute> route = rx->Route("prefill-0:50051", id);
    ASSERT_TRUE(route.ok()) << route.status();
    // The bootstrap id travels until the pair is set up, not after.
    EXPECT_EQ(route->bootstrap.size(), id == 1 ? size_t{NCCL_UNIQUE_ID_BYTES} : 0);
    auto stream = tx->Open(*route, spec);
    // Layers interleave; within a layer, positions come in order.
    stream->Push(PatternPiece(spec, 2, 4, 10));
    stream->Push(PatternPiece(spec, 0, 4, 16));
    stream->Push(PatternPiece(spec, 1, 4, 3));
    stream->Push(PatternPiece(spec, 2, 14, 6));
    stream->Push(PatternPiece(spec, 1, 7, 13));
    FinishInto(*stream, &o);
    ASSERT_TRUE(o.Arrived(absl::Seconds(60)));
    ASSERT_TRUE(o.kv.ok()) << o.kv.status();
    ASSERT_TRUE(o.Finished(absl::Seconds(60)));
    EXPECT_TRUE(o.sent.ok()) << o.sent;
    absl::StatusOr<std::vector<uint8_t>> bytes = ReceivedKvToHost(**o.kv);
    ASSERT_TRUE(bytes.ok()) << bytes.status();
    ASSERT_EQ(bytes->size(), static_cast<size_t>(spec.TotalBytes()));
    EXPECT_EQ(tokenfab::testing::WrongPatternBytes(spec, *bytes), 0);
  }
  EXPECT_EQ(tx->communicators(), 1);
  EXPECT_EQ(rx->communicators(), 1);
  EXPECT_EQ(rx->Stats().transfers_received, 2);
  EXPECT_EQ(tx->Stats().transfers_sent, 2);
}

TEST(NcclTransportTest, AbortedOrStaleTransfersFailBothSidesAndThePairIsSetUpAgain) {
  REQUIRE_GPUS_AND_NCCL(2);
  auto tx = Make(0), rx = Make(1);
  ASSERT_NE(tx, nullptr);
  ASSERT_NE(rx, nullptr);
  // An aborted sender fails the receiver's transfer; the pair stays usable.
  const KvTransferSpec aborted = Spec(10, 0, 16);
  Outcome a;
  ExpectInto(*rx, aborted, &a);
  auto route = rx->Route("prefill-0:50051", 10);
  ASSERT_TRUE(route.ok());
  auto stream = tx->Open(*route, aborted);
  stream->Push(PatternPiece(aborted, 0, 0, 16));
  stream->Abort();
  ASSERT_TRUE(a.Arrived(absl::Seconds(60)));
  EXPECT_EQ(a.kv.status().code(), absl::StatusCode::kUnavailable) << a.kv.status();

  // A sender without the communicator the route names fails its stream;
  // told so, the receiver tears its side down and sets up a new pair.
  const KvTransferSpec stale = Spec(11, 0, 16);
  Outcome s;
  ExpectInto(*rx, stale, &s);
  route = rx->Route("prefill-0:50051", 11);
  ASSERT_TRUE(route.ok());
  EXPECT_TRUE(route->bootstrap.empty());
  auto other = Make(0);  // a restarted prefill worker: no communicators
  ASSERT_NE(other, nullptr);
  auto lost = other->Open(*route, stale);
  FinishInto(*lost, &s);
  ASSERT_TRUE(s.Finished(absl::Seconds(60)));
  EXPECT_EQ(s.sent.code(), absl::StatusCode::kAborted) << s.sent;
  rx->Failed(11, s.sent);
  EXPECT_FALSE(s.arrived.HasBeenNotified()) << "a failed transfer is reported by the caller";
  const KvTransferSpec again = Spec(12, 0, 16);
  Outcome g;
  ExpectInto(*rx, again, &g);
  route = rx->Route("prefill-0:50051", 12);
  ASSERT_TRUE(route.ok());
  EXPECT_EQ(route->bootstrap.size(), size_t{NCCL_UNIQUE_ID_BYTES}) << "a new pair";
  auto fresh = other->Open(*route, again);
  for (int32_t l = 0; l < 3; ++l) fresh->Push(PatternPiece(again, l, 0, 16));
  FinishInto(*fresh, &g);
  ASSERT_TRUE(g.Arrived(absl::Seconds(60)));
  EXPECT_TRUE(g.kv.ok()) << g.kv.status();
  ASSERT_TRUE(g.Finished(absl::Seconds(60)));
  EXPECT_TRUE(g.sent.ok()) << g.sent;
}

TEST(NcclTransportTest, TheLeastRecentlyUsedIdleCommunicatorMakesRoom) {
  REQUIRE_GPUS_AND_NCCL(2);
  auto tx = Make(0), rx = Make(1, /*max_peers=*/1);
  ASSERT_NE(tx, nullptr);
  ASSERT_NE(rx, nullptr);
  for (uint64_t id : {20, 21}) {
    const KvTransferSpec spec = Spec(id, 0, 16);
    Outcome o;
    ExpectInto(*rx, spec, &o);
    // Two "prefill workers" (two addresses), one communicator allowed.
    auto route = rx->Route(id == 20 ? "prefill-0:1" : "prefill-1:1", id);
    ASSERT_TRUE(route.ok()) << route.status();
    EXPECT_FALSE(route->bootstrap.empty());
    auto stream = tx->Open(*route, spec);
    for (int32_t l = 0; l < 3; ++l) stream->Push(PatternPiece(spec, l, 0, 16));
    FinishInto(*stream, &o);
    ASSERT_TRUE(o.Arrived(absl::Seconds(60)));
    EXPECT_TRUE(o.kv.ok()) << o.kv.status();
    ASSERT_TRUE(o.Finished(absl::Seconds(60)));
    EXPECT_EQ(rx->communicators(), 1);
  }
  // A busy communicator is not closed: a second peer is refused meanwhile.
  const KvTransferSpec busy = Spec(30, 0, 16), refused = Spec(31, 0, 16);
  Outcome b, r;
  ExpectInto(*rx, busy, &b);
  ASSERT_TRUE(rx->Route("prefill-1:1", 30).ok());
  ExpectInto(*rx, refused, &r);
  EXPECT_EQ(rx->Route("prefill-0:1", 31).status().code(), absl::StatusCode::kResourceExhausted);
  rx->Forget(30);
  rx->Forget(31);
}

TEST(NcclTransportTest, APrefillsKvGoesFromOneGpusBlocksIntoAnothers) {
  REQUIRE_GPUS_AND_NCCL(2);
  auto a = MakeCuda(0), b = MakeCuda(1);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  auto tx = Make(0), rx = Make(1);
  ASSERT_NE(tx, nullptr);
  ASSERT_NE(rx, nullptr);
  const std::vector<int32_t> ta = Blocks(0, 3), tb = Blocks(20, 3);
  Prefill(*a, ta, 40);
  KvTransferSpec spec;
  spec.transfer_id = 99;
  spec.layout = a->kv_layout();
  spec.first_position = 3;
  spec.end_position = 40;
  Outcome o;
  ExpectInto(*rx, spec, &o);
  auto route = rx->Route("prefill-0:50051", 99);
  ASSERT_TRUE(route.ok());
  auto stream = tx->Open(*route, spec);
  // Two chunks per layer, as a chunked prefill pushes them.
  for (int32_t l = 0; l < spec.layout.num_layers; ++l) {
    ASSERT_TRUE(stream->PushSlice(*a, {l, ta, 3, 17}).ok());
    ASSERT_TRUE(stream->PushSlice(*a, {l, ta, 20, 20}).ok());
  }
  FinishInto(*stream, &o);
  ASSERT_TRUE(o.Arrived(absl::Seconds(60)));
  ASSERT_TRUE(o.kv.ok()) << o.kv.status();
  EXPECT_TRUE((*o.kv)->bytes.empty()) << "the KV stays in GPU memory";
  ASSERT_TRUE((*o.kv)->WriteTo(*b, tb).ok());
  for (int32_t l = 0; l < spec.layout.num_layers; ++l) {
    EXPECT_EQ(Read(*a, l, ta, 3, 37), Read(*b, l, tb, 3, 37)) << "layer " << l;
  }
  // A transfer received on GPU 1 does not write into GPU 0's backend.
  EXPECT_EQ((*o.kv)->WriteTo(*a, ta).code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(o.Finished(absl::Seconds(60)));
  EXPECT_TRUE(o.sent.ok()) << o.sent;
}

}  // namespace
}  // namespace tokenfab::cuda
