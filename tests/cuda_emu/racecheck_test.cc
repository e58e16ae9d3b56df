// The race check (racecheck.h) on probe kernels built with
// its instrumentation: handoffs that a barrier orders run clean and give
// the right values; each kind of unordered handoff fails its launch with a
// report that names the race, the threads, and the source lines of both
// accesses. A failed launch poisons the device, so those run in a child
// process (death tests).
#include <cuda_runtime_api.h>

#include <fstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/cuda_emu/probe_kernels.h"

namespace tokenfab::cuda_emu {
namespace {

using probe::Handoff;

std::vector<int32_t> RunHandoff(Handoff mode, int32_t blocks, cudaError_t* result) {
  int32_t* out = nullptr;
  const size_t n = 64 * static_cast<size_t>(blocks);
  std::vector<int32_t> host(n, -1);
  if (cudaMalloc(reinterpret_cast<void**>(&out), n * sizeof(int32_t)) != cudaSuccess) {
    *result = cudaErrorMemoryAllocation;
    return host;
  }
  *result = probe::HandOff(out, mode, blocks, nullptr);
  if (*result == cudaSuccess) *result = cudaDeviceSynchronize();
  if (*result == cudaSuccess) {
    *result = cudaMemcpy(host.data(), out, n * sizeof(int32_t), cudaMemcpyDeviceToHost);
  }
  cudaFree(out);
  return host;
}

// The line of probe_kernels.cu that carries `marker` (its comment).
std::string LineOf(const std::string& marker) {
  std::ifstream in("tests/cuda_emu/probe_kernels.cu");
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (line.find("// racecheck: " + marker) != std::string::npos) return std::to_string(n);
  }
  ADD_FAILURE() << "no line marked '" << marker << "' in probe_kernels.cu";
  return "?";
}

TEST(RacecheckTest, HandoffsThatABarrierOrdersRunCleanAndRight) {
  struct Case {
    Handoff mode;
    int32_t (*expected)(int32_t t);
  };
  const Case cases[] = {
      {Handoff::kSyncThreads, [](int32_t t) { return 63 - t; }},
      {Handoff::kSyncWarp, [](int32_t t) { return t ^ 1; }},
      {Handoff::kOwnSlot, [](int32_t t) { return t; }},
      {Handoff::kAtomicsThenSync, [](int32_t) { return 64; }},
      {Handoff::kGlobalSyncThreads, [](int32_t t) { return 63 - t; }},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(::testing::Message() << "mode " << static_cast<int>(c.mode));
    // Three blocks, twice: a block's shadow must not see the last block's
    // (or the last launch's) accesses.
    for (int run = 0; run < 2; ++run) {
      cudaError_t result = cudaSuccess;
      const std::vector<int32_t> out = RunHandoff(c.mode, 3, &result);
      ASSERT_EQ(result, cudaSuccess) << cudaGetErrorString(result);
      for (int32_t i = 0; i < static_cast<int32_t>(out.size()); ++i) {
        ASSERT_EQ(out[i], c.expected(i % 64)) << "thread " << i % 64 << " of block " << i / 64;
      }
    }
  }
}

#define EXPECT_RACE(mode, stderr_regex)                                       \
  EXPECT_EXIT(                                                                \
      {                                                                       \
        cudaError_t result_ = cudaSuccess;                                    \
        RunHandoff(mode, 2, &result_);                                        \
        std::exit(result_ == cudaErrorLaunchFailure ? 0 : 1);                 \
      },                                                                      \
      ::testing::ExitedWithCode(0), stderr_regex)

const char kThread[] = "thread \\([0-9]+,0,0\\)";

TEST(RacecheckDeathTest, AReadOfAnotherWarpsSlotWithNoBarrierIsReported) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  // In index order, thread 31 reads slot 32 before thread 32 writes it.
  EXPECT_RACE(Handoff::kNoBarrier,
              std::string("kernel HandoffKernel, block \\(0,0,0\\): shared memory race \\(write "
                          "after read\\) on byte [0-9]+ of dynamic shared memory: ") +
                  kThread + " writes it at probe_kernels.cu:" + LineOf("no-barrier write") +
                  ", " + kThread + " read it at probe_kernels.cu:" + LineOf("no-barrier read") +
                  ", and no barrier orders the two");
}

TEST(RacecheckDeathTest, ASyncwarpDoesNotOrderTwoWarps) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_RACE(Handoff::kSyncWarpAcrossWarps,
              "shared memory race \\((read after write|write after read)\\) on byte [0-9]+ of "
              "dynamic shared memory");
}

TEST(RacecheckDeathTest, AShuffleOrdersNoMemory) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_RACE(Handoff::kShuffle,
              std::string("shared memory race \\(read after write\\) on byte [0-9]+ of dynamic "
                          "shared memory: ") +
                  kThread + " reads it at probe_kernels.cu:" + LineOf("shuffle read") + ", " +
                  kThread + " wrote it at probe_kernels.cu:" + LineOf("shuffle write"));
}

TEST(RacecheckDeathTest, OverwritingASlotANeighbourReadsIsReported) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  // Which access comes second depends on the schedule: thread 0's write
  // after thread 1's read, or thread 1's read after thread 0's write.
  EXPECT_RACE(Handoff::kWriteAfterRead,
              "shared memory race \\((write after read|read after write)\\) on byte [0-9]+ of "
              "dynamic shared memory");
}

TEST(RacecheckDeathTest, AtomicsAreNotRacesButAReadOfTheirTotalNeedsABarrier) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_RACE(Handoff::kAtomicsThenRead,
              "shared memory race \\((write after read|read after write)\\) on byte [0-9]+ of "
              "counter: .*atomically");
}

TEST(RacecheckDeathTest, AStaticSharedArrayIsNamedInTheReport) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_RACE(Handoff::kStaticNoBarrier, "shared memory race \\(write after read\\) on byte "
                                         "[0-9]+ of slots: ");
}

TEST(RacecheckDeathTest, AHandoffThroughGlobalMemoryNeedsABarrierToo) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_RACE(Handoff::kGlobalNoBarrier,
              std::string("global memory race \\(write after read\\) on byte [0-9]+ of a 512-byte "
                          "device allocation: ") +
                  kThread + " writes it at probe_kernels.cu:" + LineOf("global write") + ", " +
                  kThread + " read it at probe_kernels.cu:" + LineOf("global read"));
}

}  // namespace
}  // namespace tokenfab::cuda_emu
