// The CUDA emulator itself: that kernels see CUDA's semantics (shuffles,
// barriers, shared memory, atomics), that streams, events and graphs keep
// CUDA's ordering, that cuBLASLt's product is right, and that what a GPU
// would punish is refused with CUDA's error: a deadlocked barrier, a bad
// copy or free, a synchronous call during capture, a launch on another
// device's stream. Failures that poison a device (sticky errors) run in a
// child process (death tests).
#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <cmath>
#include <cstring>
#include <numeric>
#include <optional>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "tests/cuda_emu/emu_runtime.h"
#include "tests/cuda_emu/probe_kernels.h"

namespace tokenfab::cuda_emu {
namespace {

template <typename T>
T* DeviceCopy(const std::vector<T>& v) {
  void* p = nullptr;
  EXPECT_EQ(cudaMalloc(&p, sizeof(T) * std::max<size_t>(v.size(), 1)), cudaSuccess);
  if (!v.empty()) {
    EXPECT_EQ(cudaMemcpy(p, v.data(), sizeof(T) * v.size(), cudaMemcpyHostToDevice), cudaSuccess);
  }
  return static_cast<T*>(p);
}

template <typename T>
std::vector<T> HostCopy(const T* p, size_t n) {
  std::vector<T> v(n);
  EXPECT_EQ(cudaMemcpy(v.data(), p, sizeof(T) * n, cudaMemcpyDeviceToHost), cudaSuccess);
  return v;
}

TEST(CudaEmuTest, DevicesSayTheyAreEmulated) {
  int n = 0;
  ASSERT_EQ(cudaGetDeviceCount(&n), cudaSuccess);
  ASSERT_GE(n, 1);
  cudaDeviceProp p{};
  ASSERT_EQ(cudaGetDeviceProperties(&p, 0), cudaSuccess);
  EXPECT_NE(std::string(p.name).find("emulator"), std::string::npos) << p.name;
  EXPECT_EQ(p.major, 9);
  EXPECT_EQ(cudaSetDevice(n), cudaErrorInvalidDevice);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidDevice) << "the last error, then cleared";
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
}

TEST(CudaEmuTest, WarpShufflesAndBallotAsOnAGpu) {
  for (int32_t n : {32, 96, 48}) {  // 48: a partial last warp
    SCOPED_TRACE(::testing::Message() << n << " threads");
    std::vector<int32_t> in(n);
    std::mt19937 rng(n);
    for (int32_t& v : in) v = static_cast<int32_t>(rng() % 100);
    int32_t* d_in = DeviceCopy(in);
    int32_t* d_out = DeviceCopy(std::vector<int32_t>(5 * n));
    ASSERT_EQ(probe::WarpOps(d_in, d_out, n, nullptr), cudaSuccess);
    const std::vector<int32_t> out = HostCopy(d_out, 5 * n);
    for (int32_t w = 0; w * 32 < n; ++w) {
      const int32_t first = w * 32, lanes = std::min(32, n - first);
      if (lanes < 32) continue;  // a partial warp's full-mask results are undefined
      const int32_t sum = std::accumulate(in.begin() + first, in.begin() + first + 32, 0);
      uint32_t ballot = 0;
      for (int l = 0; l < 32; ++l) ballot |= static_cast<uint32_t>(in[first + l] & 1) << l;
      int32_t scan = 0;
      for (int l = 0; l < 32; ++l) {
        const int32_t t = first + l;
        scan += in[t];
        EXPECT_EQ(out[5 * t], sum) << "thread " << t;
        EXPECT_EQ(out[5 * t + 1], scan) << "thread " << t;
        EXPECT_EQ(out[5 * t + 2], l == 31 ? in[t] : in[t + 1]) << "thread " << t;
        EXPECT_EQ(out[5 * t + 3], in[first]) << "thread " << t;
        EXPECT_EQ(static_cast<uint32_t>(out[5 * t + 4]), ballot) << "thread " << t;
      }
    }
    cudaFree(d_in);
    cudaFree(d_out);
  }
}

// A block of 256 threads reverses its input through shared memory.
void ExpectABlockReverses() {
  const int32_t n = 256;
  std::vector<int32_t> in(n);
  std::iota(in.begin(), in.end(), 7);
  int32_t* d_in = DeviceCopy(in);
  int32_t* d_out = DeviceCopy(std::vector<int32_t>(n));
  EXPECT_EQ(probe::BlockReverse(d_in, d_out, n, nullptr), cudaSuccess);
  EXPECT_EQ(HostCopy(d_out, n), std::vector<int32_t>(in.rbegin(), in.rend()));
  cudaFree(d_in);
  cudaFree(d_out);
}

TEST(CudaEmuTest, SharedMemoryAndSyncThreadsReverseABlock) { ExpectABlockReverses(); }

// A race on purpose (every thread writes one word): in index order the last
// block's last thread always lands last; shuffled, other blocks and threads
// do, the same ones again under the same seed, and correct kernels give the
// same results either way.
TEST(CudaEmuTest, AShuffledScheduleRunsBlocksAndThreadsInOtherOrders) {
  const std::optional<uint64_t> before = ShuffleSeed();
  const int32_t blocks = 8, threads = 64;
  int32_t* out = DeviceCopy(std::vector<int32_t>(1 + blocks));
  auto launches = [&](int32_t n) {
    std::vector<std::vector<int32_t>> results;
    for (int32_t i = 0; i < n; ++i) {
      EXPECT_EQ(probe::LastWriter(out, blocks, threads, nullptr), cudaSuccess);
      results.push_back(HostCopy(out, 1 + blocks));
    }
    return results;
  };
  SetShuffleSeed(std::nullopt);
  for (const auto& r : launches(3)) {
    EXPECT_EQ(r[0], blocks * threads - 1);
    for (int32_t b = 0; b < blocks; ++b) EXPECT_EQ(r[1 + b], threads - 1);
  }
  SetShuffleSeed(42);
  const auto shuffled = launches(10);
  bool other_block = false, other_thread = false;
  for (const auto& r : shuffled) {
    ASSERT_TRUE(r[0] >= 0 && r[0] < blocks * threads) << r[0];
    other_block |= r[0] / threads != blocks - 1;
    for (int32_t b = 0; b < blocks; ++b) {
      ASSERT_TRUE(r[1 + b] >= 0 && r[1 + b] < threads) << r[1 + b];
      other_thread |= r[1 + b] != threads - 1;
    }
  }
  EXPECT_TRUE(other_block);
  EXPECT_TRUE(other_thread);
  SetShuffleSeed(42);
  EXPECT_EQ(launches(10), shuffled);
  // A kernel with its barrier is right in any order.
  ExpectABlockReverses();
  SetShuffleSeed(before);
  cudaFree(out);
}

TEST(CudaEmuTest, AtomicsCountEveryThreadOfEveryBlock) {
  int32_t* counter = DeviceCopy(std::vector<int32_t>{0});
  ASSERT_EQ(probe::AtomicCount(counter, 37, nullptr), cudaSuccess);
  EXPECT_EQ(HostCopy(counter, 1)[0], 37 * 256);
  cudaFree(counter);
}

TEST(CudaEmuTest, DynamicSharedMemoryBeyond48KbNeedsTheAttribute) {
  int32_t* out = DeviceCopy(std::vector<int32_t>{0});
  const size_t big = 96 * 1024;
  EXPECT_EQ(probe::LargeShared(out, big, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess) << "a refused launch is not sticky";
  ASSERT_EQ(probe::AllowLargeShared(static_cast<int32_t>(big)), cudaSuccess);
  ASSERT_EQ(probe::LargeShared(out, big, nullptr), cudaSuccess);
  EXPECT_EQ(HostCopy(out, 1)[0], static_cast<int32_t>(big));
  EXPECT_EQ(probe::AllowLargeShared(300 * 1024), cudaErrorInvalidValue) << "past the opt-in limit";
  cudaFree(out);
}

TEST(CudaEmuTest, InvalidLaunchConfigurationsAreRefused) {
  int32_t* out = DeviceCopy(std::vector<int32_t>(1024));
  EXPECT_EQ(probe::Threads(out, 2048, nullptr), cudaErrorInvalidConfiguration);
  EXPECT_EQ(probe::Threads(out, 1024, nullptr), cudaSuccess);
  EXPECT_EQ(HostCopy(out, 1024)[1023], 1023);
  cudaFree(out);
}

TEST(CudaEmuTest, FreshDeviceMemoryIsGarbageNotZero) {
  float* p = nullptr;
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&p), 64 * sizeof(float)), cudaSuccess);
  for (float v : HostCopy(p, 64)) EXPECT_TRUE(std::isnan(v));
  cudaFree(p);
}

TEST(CudaEmuTest, CopiesAndFreesAreCheckedAgainstTheirAllocations) {
  std::vector<char> host(64);
  void* d = nullptr;
  ASSERT_EQ(cudaMalloc(&d, 64), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(d, host.data(), 65, cudaMemcpyHostToDevice), cudaErrorInvalidValue)
      << "one byte past the allocation";
  EXPECT_EQ(cudaMemcpy(static_cast<char*>(d) + 32, host.data(), 32, cudaMemcpyHostToDevice),
            cudaSuccess);
  EXPECT_EQ(cudaMemcpy(host.data(), d, 64, cudaMemcpyHostToDevice), cudaErrorInvalidValue)
      << "direction the other way round";
  EXPECT_EQ(cudaMemcpy(d, host.data(), 64, cudaMemcpyDeviceToDevice), cudaErrorInvalidValue)
      << "host memory as a device source";
  EXPECT_EQ(cudaMemset(static_cast<char*>(d) + 60, 0, 8), cudaErrorInvalidValue);
  EXPECT_EQ(cudaFree(static_cast<char*>(d) + 8), cudaErrorInvalidValue) << "not the start";
  EXPECT_EQ(cudaFreeHost(d), cudaErrorInvalidValue) << "not pinned memory";
  cudaStream_t s;
  ASSERT_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
  EXPECT_EQ(cudaFreeAsync(d, s), cudaSuccess);
  EXPECT_EQ(cudaFreeAsync(d, s), cudaErrorInvalidValue) << "freed twice";
  EXPECT_EQ(cudaStreamSynchronize(s), cudaSuccess);
  EXPECT_EQ(cudaStreamDestroy(s), cudaSuccess);
  EXPECT_EQ(cudaStreamDestroy(s), cudaErrorInvalidResourceHandle) << "destroyed twice";
  EXPECT_EQ(cudaMemcpyAsync(host.data(), host.data(), 1, cudaMemcpyHostToHost, s),
            cudaErrorInvalidResourceHandle)
      << "a destroyed stream";
  cudaGetLastError();
}

TEST(CudaEmuTest, AnEventOrdersWorkAcrossStreams) {
  const int32_t n = 1000;
  float* x = DeviceCopy(std::vector<float>(n, 0.0f));
  cudaStream_t a, b;
  cudaEvent_t done;
  ASSERT_EQ(cudaStreamCreateWithFlags(&a, cudaStreamNonBlocking), cudaSuccess);
  ASSERT_EQ(cudaStreamCreateWithFlags(&b, cudaStreamNonBlocking), cudaSuccess);
  ASSERT_EQ(cudaEventCreateWithFlags(&done, cudaEventDisableTiming), cudaSuccess);
  for (int i = 0; i < 20; ++i) ASSERT_EQ(probe::AddOne(x, n, a), cudaSuccess);
  ASSERT_EQ(cudaEventRecord(done, a), cudaSuccess);
  float* pinned = nullptr;
  ASSERT_EQ(cudaMallocHost(reinterpret_cast<void**>(&pinned), sizeof(float) * n), cudaSuccess);
  ASSERT_EQ(cudaStreamWaitEvent(b, done, 0), cudaSuccess);
  ASSERT_EQ(cudaMemcpyAsync(pinned, x, sizeof(float) * n, cudaMemcpyDeviceToHost, b), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(b), cudaSuccess);
  EXPECT_EQ(pinned[0], 20.0f);
  EXPECT_EQ(pinned[n - 1], 20.0f);
  EXPECT_EQ(cudaEventQuery(done), cudaSuccess);
  cudaFreeHost(pinned);
  cudaFree(x);
  cudaEventDestroy(done);
  cudaStreamDestroy(a);
  cudaStreamDestroy(b);
}

TEST(CudaEmuTest, AGraphReplaysItsWorkWithTheArgumentsOfItsCapture) {
  const int32_t n = 256;
  float* x = DeviceCopy(std::vector<float>(n, 0.0f));
  float* pinned = nullptr;
  ASSERT_EQ(cudaMallocHost(reinterpret_cast<void**>(&pinned), sizeof(float) * n), cudaSuccess);
  cudaStream_t s;
  ASSERT_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
  ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  // Captured: a copy in from pinned memory (read when replayed), one kernel.
  ASSERT_EQ(cudaMemcpyAsync(x, pinned, sizeof(float) * n, cudaMemcpyHostToDevice, s), cudaSuccess);
  ASSERT_EQ(probe::AddOne(x, n, s), cudaSuccess);
  cudaGraph_t graph;
  ASSERT_EQ(cudaStreamEndCapture(s, &graph), cudaSuccess);
  cudaGraphExec_t exec;
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
  for (float start : {5.0f, 41.0f}) {
    for (int32_t i = 0; i < n; ++i) pinned[i] = start + i;
    ASSERT_EQ(cudaGraphLaunch(exec, s), cudaSuccess);
    ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
    const std::vector<float> got = HostCopy(x, n);
    EXPECT_EQ(got[0], start + 1);
    EXPECT_EQ(got[n - 1], start + n);
  }
  EXPECT_EQ(cudaGraphExecDestroy(exec), cudaSuccess);
  EXPECT_EQ(cudaGraphDestroy(graph), cudaSuccess);
  cudaFreeHost(pinned);
  cudaFree(x);
  cudaStreamDestroy(s);
}

TEST(CudaEmuTest, ASynchronousCallDuringCaptureInvalidatesIt) {
  cudaStream_t s;
  ASSERT_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
  ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  void* p = nullptr;
  EXPECT_EQ(cudaMalloc(&p, 16), cudaErrorStreamCaptureUnsupported);
  cudaGraph_t graph = nullptr;
  EXPECT_EQ(cudaStreamEndCapture(s, &graph), cudaErrorStreamCaptureInvalidated);
  EXPECT_EQ(graph, nullptr);
  EXPECT_EQ(cudaGetLastError(), cudaErrorStreamCaptureInvalidated);
  // The stream and the device work afterwards.
  float* x = DeviceCopy(std::vector<float>(4, 1.0f));
  ASSERT_EQ(probe::AddOne(x, 4, s), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
  EXPECT_EQ(HostCopy(x, 4)[3], 2.0f);
  cudaGetLastError();
  cudaFree(x);
  cudaStreamDestroy(s);
}

TEST(CudaEmuTest, ALaunchOnAnotherDevicesStreamIsRefused) {
  int n = 0;
  cudaGetDeviceCount(&n);
  if (n < 2) GTEST_SKIP() << "one emulated device (TOKENFAB_CUDA_EMU_DEVICES)";
  ASSERT_EQ(cudaSetDevice(1), cudaSuccess);
  cudaStream_t other;
  ASSERT_EQ(cudaStreamCreateWithFlags(&other, cudaStreamNonBlocking), cudaSuccess);
  ASSERT_EQ(cudaSetDevice(0), cudaSuccess);
  float* x = DeviceCopy(std::vector<float>(4, 0.0f));
  EXPECT_EQ(probe::AddOne(x, 4, other), cudaErrorInvalidResourceHandle);
  cudaEvent_t e;
  ASSERT_EQ(cudaEventCreate(&e), cudaSuccess);
  EXPECT_EQ(cudaEventRecord(e, other), cudaErrorInvalidResourceHandle);
  cudaEventDestroy(e);
  cudaFree(x);
  cudaStreamDestroy(other);
}

// A child process: runs `body`, then exits 0 if `body` returned true.
#define EXPECT_IN_CHILD(body, stderr_regex) \
  EXPECT_EXIT(                              \
      {                                     \
        const bool ok_ = (body)();          \
        std::exit(ok_ ? 0 : 1);             \
      },                                    \
      ::testing::ExitedWithCode(0), stderr_regex)

TEST(CudaEmuDeathTest, ADeadlockedBarrierFailsTheLaunchAndPoisonsTheDevice) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_IN_CHILD(([] {
                    int32_t* out = nullptr;
                    cudaMalloc(reinterpret_cast<void**>(&out), 64 * sizeof(int32_t));
                    // The launch's own result may already be the fault (the stream
                    // thread can run the kernel first), as on a GPU.
                    const cudaError_t launched = probe::DivergentSyncThreads(out, nullptr);
                    if (launched != cudaSuccess && launched != cudaErrorLaunchFailure) {
                      return false;
                    }
                    // The fault shows at the next synchronisation, and stays.
                    return cudaDeviceSynchronize() == cudaErrorLaunchFailure &&
                           cudaMemset(out, 0, 4) == cudaErrorLaunchFailure &&
                           cudaGetLastError() == cudaErrorLaunchFailure;
                  }),
                  "DivergentSyncThreadsKernel.*deadlock: 16 threads wait at __syncthreads, "
                  "16 at a warp barrier");
}

TEST(CudaEmuDeathTest, AShuffleWaitingForAnExitedLaneFailsTheLaunch) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_IN_CHILD(([] {
                    int32_t* out = nullptr;
                    cudaMalloc(reinterpret_cast<void**>(&out), 32 * sizeof(int32_t));
                    probe::DivergentShuffle(out, nullptr);
                    return cudaDeviceSynchronize() == cudaErrorLaunchFailure;
                  }),
                  "DivergentShuffleKernel.*(waits for a lane that has exited|exited while lanes)");
}

// cuBLASLt's D = alpha op(A) op(B) + beta C, column-major, against a
// float64 product of the same (bf16-representable) values.
uint16_t Bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
float FromBf16(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

TEST(CudaEmuTest, CublasLtProductMatchesFloat64ForEveryTransposeAndType) {
  cublasLtHandle_t h;
  ASSERT_EQ(cublasLtCreate(&h), CUBLAS_STATUS_SUCCESS);
  const int64_t m = 13, n = 7, k = 37;
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(-1, 1);
  for (const cublasOperation_t ta : {CUBLAS_OP_N, CUBLAS_OP_T}) {
    for (const cublasOperation_t tb : {CUBLAS_OP_N, CUBLAS_OP_T}) {
      for (const cudaDataType_t ct : {CUDA_R_16BF, CUDA_R_32F}) {
        SCOPED_TRACE(::testing::Message() << "transa " << ta << " transb " << tb << " C type "
                                          << (ct == CUDA_R_16BF ? "bf16" : "float"));
        const int64_t ar = ta == CUBLAS_OP_N ? m : k, ac = ta == CUBLAS_OP_N ? k : m;
        const int64_t br = tb == CUBLAS_OP_N ? k : n, bc = tb == CUBLAS_OP_N ? n : k;
        const int64_t lda = ar + 3, ldb = br + 1, ldc = m + 2;
        std::vector<uint16_t> a(lda * ac), b(ldb * bc);
        for (auto& v : a) v = Bf16(u(rng));
        for (auto& v : b) v = Bf16(u(rng));
        std::vector<float> c0(ldc * n);
        for (auto& v : c0) v = FromBf16(Bf16(u(rng)));
        auto at = [&](int64_t i, int64_t j) {  // op(A)[i][j]
          return FromBf16(ta == CUBLAS_OP_N ? a[j * lda + i] : a[i * lda + j]);
        };
        auto bt = [&](int64_t i, int64_t j) {
          return FromBf16(tb == CUBLAS_OP_N ? b[j * ldb + i] : b[i * ldb + j]);
        };
        uint16_t* da = DeviceCopy(a);
        uint16_t* db = DeviceCopy(b);
        void* dc = nullptr;
        const size_t csize = ct == CUDA_R_16BF ? 2 : 4;
        ASSERT_EQ(cudaMalloc(&dc, csize * ldc * n), cudaSuccess);
        std::vector<uint8_t> c_bytes(csize * ldc * n);
        for (size_t i = 0; i < c0.size(); ++i) {
          if (ct == CUDA_R_16BF) {
            const uint16_t v = Bf16(c0[i]);
            std::memcpy(&c_bytes[2 * i], &v, 2);
          } else {
            std::memcpy(&c_bytes[4 * i], &c0[i], 4);
          }
        }
        ASSERT_EQ(cudaMemcpy(dc, c_bytes.data(), c_bytes.size(), cudaMemcpyHostToDevice),
                  cudaSuccess);
        cublasLtMatmulDesc_t op;
        cublasLtMatrixLayout_t la, lb, lc;
        ASSERT_EQ(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F),
                  CUBLAS_STATUS_SUCCESS);
        cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta);
        cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb);
        cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, ar, ac, lda);
        cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, br, bc, ldb);
        cublasLtMatrixLayoutCreate(&lc, ct, m, n, ldc);
        const float alpha = 0.5f, beta = 1.0f;
        ASSERT_EQ(cublasLtMatmul(h, op, &alpha, da, la, db, lb, &beta, dc, lc, dc, lc, nullptr,
                                 nullptr, 0, nullptr),
                  CUBLAS_STATUS_SUCCESS);
        ASSERT_EQ(cudaMemcpy(c_bytes.data(), dc, c_bytes.size(), cudaMemcpyDeviceToHost),
                  cudaSuccess);
        for (int64_t j = 0; j < n; ++j) {
          for (int64_t i = 0; i < m; ++i) {
            double want = 0;
            for (int64_t t = 0; t < k; ++t) want += static_cast<double>(at(i, t)) * bt(t, j);
            want = alpha * want + beta * c0[j * ldc + i];
            float got;
            if (ct == CUDA_R_16BF) {
              uint16_t v;
              std::memcpy(&v, &c_bytes[2 * (j * ldc + i)], 2);
              got = FromBf16(v);
            } else {
              std::memcpy(&got, &c_bytes[4 * (j * ldc + i)], 4);
            }
            const double tol = ct == CUDA_R_16BF ? 1e-2 * (1 + std::fabs(want)) : 1e-5 * (1 + k);
            ASSERT_NEAR(got, want, tol) << "D[" << i << "][" << j << "]";
          }
        }
        // Shapes that do not multiply are refused before anything runs.
        cublasLtMatrixLayout_t wrong;
        cublasLtMatrixLayoutCreate(&wrong, ct, m + 1, n, ldc + 1);
        EXPECT_EQ(cublasLtMatmul(h, op, &alpha, da, la, db, lb, &beta, dc, wrong, dc, wrong,
                                 nullptr, nullptr, 0, nullptr),
                  CUBLAS_STATUS_NOT_SUPPORTED);
        for (auto* l : {la, lb, lc, wrong}) cublasLtMatrixLayoutDestroy(l);
        cublasLtMatmulDescDestroy(op);
        cudaFree(da);
        cudaFree(db);
        cudaFree(dc);
      }
    }
  }
  cublasLtDestroy(h);
}

TEST(CudaEmuDeathTest, AProductReadingPastItsOperandFaultsTheDevice) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_IN_CHILD(([] {
                    cublasLtHandle_t h;
                    cublasLtCreate(&h);
                    cublasLtMatmulDesc_t op;
                    cublasLtMatrixLayout_t l;
                    cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F);
                    cublasLtMatrixLayoutCreate(&l, CUDA_R_32F, 8, 8, 8);
                    void* small = nullptr;  // 63 floats for an 8x8 operand
                    void* full = nullptr;
                    cudaMalloc(&small, 63 * sizeof(float));
                    cudaMalloc(&full, 64 * sizeof(float));
                    const float one = 1, zero = 0;
                    if (cublasLtMatmul(h, op, &one, small, l, full, l, &zero, full, l, full, l,
                                       nullptr, nullptr, 0, nullptr) != CUBLAS_STATUS_SUCCESS) {
                      return false;
                    }
                    return cudaDeviceSynchronize() == cudaErrorIllegalAddress;
                  }),
                  "operand A: 256 bytes at .* run 4 bytes past the end");
}

}  // namespace
}  // namespace tokenfab::cuda_emu
