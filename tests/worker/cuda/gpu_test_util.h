// Shared by the CUDA tests: skipping without a GPU, seeded random data,
// host <-> device copies and tolerance checks (atol + rtol * |ref|).
#ifndef TOKENFAB_TESTS_WORKER_CUDA_GPU_TEST_UTIL_H_
#define TOKENFAB_TESTS_WORKER_CUDA_GPU_TEST_UTIL_H_

#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/test_paths.h"
#include "worker/cuda/device_buffer.h"
#include "worker/cuda/device_model.h"
#include "worker/model_loader.h"

namespace tokenfab::cuda::testing {

// Empty when a GPU the backend can use (sm_80+) is visible, else why not.
inline std::string NoGpuReason() {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) return std::string("no usable GPU: ") + cudaGetErrorString(e);
  if (n == 0) return "no GPU visible";
  cudaDeviceProp p{};
  if (cudaGetDeviceProperties(&p, 0) != cudaSuccess) return "cannot read GPU 0's properties";
  if (p.major < 8) return std::string(p.name) + " is older than sm_80 (no bf16)";
  return "";
}

// Whether device 0 is the CUDA emulator's (tests/cuda_emu), whose
// arithmetic does not depend on the batch: exact checks that a GPU cannot
// promise hold there.
inline bool OnEmulator() {
  cudaDeviceProp p{};
  return cudaGetDeviceProperties(&p, 0) == cudaSuccess &&
         std::string(p.name).find("tokenfab CUDA emulator") != std::string::npos;
}

#define TOKENFAB_REQUIRE_GPU()                                                     \
  do {                                                                             \
    const std::string tokenfab_no_gpu_ = ::tokenfab::cuda::testing::NoGpuReason(); \
    if (!tokenfab_no_gpu_.empty()) GTEST_SKIP() << tokenfab_no_gpu_;               \
  } while (0)

// The default model (SmolLM2-135M), loaded once per test binary; null if
// it is missing (scripts/setup fetches it).
inline const LoadedModel* DefaultModel() {
  static const LoadedModel* model = [] {
    auto m = LoadModel(tokenfab::testing::DefaultModelPath());
    return m.ok() ? m->release() : nullptr;
  }();
  return model;
}

// The seed of a test's random data: $TOKENFAB_TEST_SEED, else a fixed one.
// Tests print it in their failures (SCOPED_TRACE) so a failure reproduces.
inline uint32_t TestSeed() {
  const char* env = std::getenv("TOKENFAB_TEST_SEED");
  return env != nullptr ? static_cast<uint32_t>(std::strtoul(env, nullptr, 10)) : 20261123u;
}

inline float Bf16ToFloat(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
inline float RoundBf16(float f) { return Bf16ToFloat(FloatToBf16Bits(f)); }

inline std::vector<uint16_t> ToBf16(const std::vector<float>& v) {
  std::vector<uint16_t> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = FloatToBf16Bits(v[i]);
  return out;
}
inline std::vector<float> FromBf16(const std::vector<uint16_t>& v) {
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = Bf16ToFloat(v[i]);
  return out;
}

// Random values in [-scale, scale], already representable in bf16 so the
// CPU reference sees exactly what the GPU reads.
inline std::vector<float> RandomBf16Values(std::mt19937& rng, size_t n, float scale = 1.0f) {
  std::uniform_real_distribution<float> d(-scale, scale);
  std::vector<float> v(n);
  for (float& x : v) x = RoundBf16(d(rng));
  return v;
}

template <typename T>
DeviceBuffer<T> ToDevice(const std::vector<T>& v) {
  auto b = DeviceBuffer<T>::Allocate(std::max<size_t>(v.size(), 1), "test buffer");
  EXPECT_TRUE(b.ok()) << b.status();
  if (!v.empty()) {
    EXPECT_EQ(cudaMemcpy(b->get(), v.data(), sizeof(T) * v.size(), cudaMemcpyHostToDevice),
              cudaSuccess);
  }
  return std::move(*b);
}

template <typename T>
std::vector<T> ToHost(const DeviceBuffer<T>& b, size_t n) {
  std::vector<T> v(n);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(v.data(), b.get(), sizeof(T) * n, cudaMemcpyDeviceToHost), cudaSuccess);
  return v;
}

// Every |got - ref| <= atol + rtol * |ref|; reports the first few misses.
inline void ExpectClose(const std::vector<float>& ref, const std::vector<float>& got, float atol,
                        float rtol, const std::string& what) {
  ASSERT_EQ(ref.size(), got.size()) << what;
  int misses = 0;
  double worst = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double err = std::fabs(static_cast<double>(got[i]) - ref[i]);
    const double tol = atol + rtol * std::fabs(ref[i]);
    worst = std::max(worst, err - tol);
    if (!(err <= tol) && ++misses <= 5) {
      ADD_FAILURE() << what << "[" << i << "]: got " << got[i] << ", reference " << ref[i]
                    << " (tolerance " << tol << ")";
    }
  }
  EXPECT_EQ(misses, 0) << what << ": " << misses << " of " << ref.size() << " values outside atol "
                       << atol << " + rtol " << rtol;
}

}  // namespace tokenfab::cuda::testing

#endif  // TOKENFAB_TESTS_WORKER_CUDA_GPU_TEST_UTIL_H_
