// The CUDA emulator's NCCL (libtokenfab_nccl_emu.so, from
// $TOKENFAB_NCCL_LIBRARY as the nccl transport loads it): two ranks on two
// emulated devices move bytes; a send completes only when its peer takes
// it; mismatched sizes, an abort and a vanished peer become the
// communicator's asynchronous errors; two ranks on one device and
// operations before set-up are refused.
#include <cuda_runtime_api.h>

#include <chrono>
#include <cstring>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "worker/cuda/nccl_api.h"

namespace tokenfab::cuda {
namespace {

const NcclApi& Api() {
  static const NcclApi* api = [] {
    auto loaded = NcclApi::Load();
    return loaded.ok() ? *loaded : nullptr;
  }();
  if (api == nullptr) {
    ADD_FAILURE() << "TOKENFAB_NCCL_LIBRARY must name the emulator's NCCL";
    std::abort();
  }
  return *api;
}

// Polls a non-blocking communicator until it leaves ncclInProgress.
ncclResult_t Settle(ncclComm_t comm) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  ncclResult_t r = ncclInProgress;
  while (r == ncclInProgress && std::chrono::steady_clock::now() < deadline) {
    if (Api().CommGetAsyncError(comm, &r) != ncclSuccess) return ncclInvalidArgument;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return r;
}

struct Rank {
  int device = 0;
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;
  void* buf = nullptr;
};

// Both ranks of a new communicator, rank r on device devices[r].
std::vector<Rank> Pair(int dev0, int dev1, size_t bytes, ncclResult_t* setup) {
  ncclUniqueId id;
  EXPECT_EQ(Api().GetUniqueId(&id), ncclSuccess);
  std::vector<Rank> ranks(2);
  ranks[0].device = dev0;
  ranks[1].device = dev1;
  for (int r = 0; r < 2; ++r) {
    cudaSetDevice(ranks[r].device);
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    const ncclResult_t init = Api().CommInitRankConfig(&ranks[r].comm, 2, id, r, &config);
    EXPECT_TRUE(init == ncclSuccess || init == ncclInProgress) << init;
    EXPECT_EQ(cudaStreamCreateWithFlags(&ranks[r].stream, cudaStreamNonBlocking), cudaSuccess);
    EXPECT_EQ(cudaMalloc(&ranks[r].buf, bytes), cudaSuccess);
  }
  *setup = ncclSuccess;
  for (Rank& r : ranks) {
    const ncclResult_t s = Settle(r.comm);
    if (s != ncclSuccess) *setup = s;
  }
  cudaSetDevice(0);
  return ranks;
}

void Close(std::vector<Rank>& ranks) {
  for (Rank& r : ranks) {
    cudaSetDevice(r.device);
    Api().CommAbort(r.comm);
    cudaStreamSynchronize(r.stream);
    cudaStreamDestroy(r.stream);
    cudaFree(r.buf);
  }
  cudaSetDevice(0);
}

ncclResult_t Send(Rank& r, size_t bytes) {
  cudaSetDevice(r.device);
  return Api().Send(r.buf, bytes, ncclUint8, 1, r.comm, r.stream);
}
ncclResult_t Recv(Rank& r, size_t bytes) {
  cudaSetDevice(r.device);
  return Api().Recv(r.buf, bytes, ncclUint8, 0, r.comm, r.stream);
}

void RequireTwoDevices() {
  int n = 0;
  cudaGetDeviceCount(&n);
  if (n < 2) GTEST_SKIP() << "one emulated device (TOKENFAB_CUDA_EMU_DEVICES)";
}

TEST(NcclEmuTest, TwoRanksOnTwoDevicesMoveTheBytes) {
  RequireTwoDevices();
  const size_t bytes = 3 << 20;
  ncclResult_t setup;
  std::vector<Rank> ranks = Pair(0, 1, bytes, &setup);
  ASSERT_EQ(setup, ncclSuccess);
  std::vector<uint8_t> data(bytes);
  std::iota(data.begin(), data.end(), 0);
  cudaSetDevice(0);
  ASSERT_EQ(cudaMemcpy(ranks[0].buf, data.data(), bytes, cudaMemcpyHostToDevice), cudaSuccess);
  ASSERT_EQ(Send(ranks[0], bytes), ncclSuccess);
  ASSERT_EQ(Recv(ranks[1], bytes), ncclSuccess);
  for (Rank& r : ranks) {
    cudaSetDevice(r.device);
    ASSERT_EQ(cudaStreamSynchronize(r.stream), cudaSuccess);
  }
  std::vector<uint8_t> got(bytes);
  cudaSetDevice(1);
  ASSERT_EQ(cudaMemcpy(got.data(), ranks[1].buf, bytes, cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_EQ(got, data);
  Close(ranks);
}

TEST(NcclEmuTest, ASendCompletesOnlyWhenThePeerTakesIt) {
  RequireTwoDevices();
  ncclResult_t setup;
  std::vector<Rank> ranks = Pair(0, 1, 64, &setup);
  ASSERT_EQ(setup, ncclSuccess);
  ASSERT_EQ(Send(ranks[0], 64), ncclSuccess);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  cudaSetDevice(0);
  EXPECT_EQ(cudaStreamQuery(ranks[0].stream), cudaErrorNotReady);
  ASSERT_EQ(Recv(ranks[1], 64), ncclSuccess);
  cudaSetDevice(0);
  EXPECT_EQ(cudaStreamSynchronize(ranks[0].stream), cudaSuccess);
  Close(ranks);
}

TEST(NcclEmuTest, MismatchedSizesAreTheReceiversAsyncError) {
  RequireTwoDevices();
  ncclResult_t setup;
  std::vector<Rank> ranks = Pair(0, 1, 256, &setup);
  ASSERT_EQ(setup, ncclSuccess);
  ASSERT_EQ(Send(ranks[0], 100), ncclSuccess);
  ASSERT_EQ(Recv(ranks[1], 200), ncclSuccess);
  cudaSetDevice(1);
  ASSERT_EQ(cudaStreamSynchronize(ranks[1].stream), cudaSuccess) << "a device error it is not";
  ncclResult_t r;
  ASSERT_EQ(Api().CommGetAsyncError(ranks[1].comm, &r), ncclSuccess);
  EXPECT_EQ(r, ncclInvalidUsage);
  EXPECT_NE(
      std::string(Api().GetLastError(ranks[1].comm)).find("receive of 200 bytes met a send of 100"),
      std::string::npos)
      << Api().GetLastError(ranks[1].comm);
  Close(ranks);  // the abort ends rank 0's send, which nobody took
}

TEST(NcclEmuTest, AnAbortEndsAPostedReceiveAndThePeerSeesItGone) {
  RequireTwoDevices();
  ncclResult_t setup;
  std::vector<Rank> ranks = Pair(0, 1, 64, &setup);
  ASSERT_EQ(setup, ncclSuccess);
  ASSERT_EQ(Recv(ranks[1], 64), ncclSuccess);
  cudaSetDevice(1);
  EXPECT_EQ(cudaStreamQuery(ranks[1].stream), cudaErrorNotReady);
  const ncclComm_t aborted = ranks[1].comm;
  ASSERT_EQ(Api().CommAbort(aborted), ncclSuccess);
  EXPECT_EQ(cudaStreamSynchronize(ranks[1].stream), cudaSuccess);
  ranks[1].comm = nullptr;
  ncclResult_t r = ncclSuccess;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (r == ncclSuccess && std::chrono::steady_clock::now() < deadline) {
    ASSERT_EQ(Api().CommGetAsyncError(ranks[0].comm, &r), ncclSuccess);
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_EQ(r, ncclRemoteError) << Api().GetLastError(ranks[0].comm);
  EXPECT_EQ(Api().CommGetAsyncError(aborted, &r), ncclInvalidArgument)
      << "an aborted communicator's handle is dead";
  Close(ranks);
}

TEST(NcclEmuTest, TwoRanksOnOneDeviceAreRefused) {
  ncclResult_t setup;
  std::vector<Rank> ranks = Pair(0, 0, 64, &setup);
  EXPECT_EQ(setup, ncclInvalidUsage);
  EXPECT_NE(std::string(Api().GetLastError(ranks[0].comm)).find("Duplicate GPU"), std::string::npos)
      << Api().GetLastError(ranks[0].comm);
  Close(ranks);
}

TEST(NcclEmuTest, OperationsBeforeSetUpAndForeignIdsAreRefused) {
  ncclUniqueId id;
  ASSERT_EQ(Api().GetUniqueId(&id), ncclSuccess);
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  ncclComm_t comm = nullptr;
  ASSERT_EQ(Api().CommInitRankConfig(&comm, 2, id, 0, &config), ncclInProgress);
  void* buf = nullptr;
  ASSERT_EQ(cudaMalloc(&buf, 16), cudaSuccess);
  EXPECT_EQ(Api().Send(buf, 16, ncclUint8, 1, comm, nullptr), ncclInvalidUsage)
      << "rank 1 never joined";
  EXPECT_EQ(Api().CommAbort(comm), ncclSuccess);
  ncclUniqueId foreign;
  std::memset(foreign.internal, 7, sizeof foreign.internal);
  EXPECT_EQ(Api().CommInitRankConfig(&comm, 2, foreign, 0, &config), ncclInvalidArgument);
  cudaFree(buf);
}

}  // namespace
}  // namespace tokenfab::cuda
