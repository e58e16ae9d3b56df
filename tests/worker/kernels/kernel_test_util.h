// Random but valid weight rows and activations for the kernel tests.
#ifndef TOKENFAB_TESTS_WORKER_KERNELS_KERNEL_TEST_UTIL_H_
#define TOKENFAB_TESTS_WORKER_KERNELS_KERNEL_TEST_UTIL_H_

#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "common/half.h"
#include "worker/model/tensor_types.h"

namespace tokenfab::testing {

inline constexpr DType kAllTypes[] = {DType::kF32,  DType::kF16,  DType::kBF16, DType::kQ4_0, DType::kQ4_1,
                                      DType::kQ5_0, DType::kQ5_1, DType::kQ8_0, DType::kQ4_K, DType::kQ6_K};

// A fresh seed per test, printed so that a failure can be replayed.
inline uint32_t Seed(const char* test) {
  const uint32_t seed = std::random_device{}();
  std::printf("%s seed: %u\n", test, seed);
  return seed;
}

// A random but valid row of `type`: random quant bits, small finite scales.
inline std::vector<uint8_t> RandomRow(DType type, int64_t n, std::mt19937& rng) {
  const DTypeTraits& t = Traits(type);
  std::vector<uint8_t> row(n / t.block_elems * t.block_bytes);
  std::uniform_int_distribution<int> byte(0, 255);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (auto& b : row) b = static_cast<uint8_t>(byte(rng));
  auto half = [&](float v) { return Fp32ToFp16(v); };
  const int64_t blocks = n / t.block_elems;
  for (int64_t b = 0; b < blocks; ++b) {
    uint8_t* p = row.data() + b * t.block_bytes;
    auto put16 = [&](int off, uint16_t v) { std::memcpy(p + off, &v, 2); };
    switch (type) {
      case DType::kF32:
        for (int i = 0; i < 1; ++i) {
          const float v = normal(rng);
          std::memcpy(p, &v, 4);
        }
        break;
      case DType::kF16: put16(0, half(normal(rng))); break;
      case DType::kBF16: put16(0, Fp32ToBf16(normal(rng))); break;
      case DType::kQ4_0:
      case DType::kQ5_0:
      case DType::kQ8_0: put16(0, half(0.01f + 0.05f * std::fabs(normal(rng)))); break;
      case DType::kQ4_1:
      case DType::kQ5_1:
        put16(0, half(0.01f + 0.05f * std::fabs(normal(rng))));
        put16(2, half(-0.3f * std::fabs(normal(rng))));
        break;
      case DType::kQ4_K:
        put16(0, half(0.001f + 0.005f * std::fabs(normal(rng))));
        put16(2, half(0.001f + 0.005f * std::fabs(normal(rng))));
        break;
      case DType::kQ6_K: put16(208, half(0.001f + 0.005f * std::fabs(normal(rng)))); break;
    }
  }
  return row;
}

inline std::vector<float> RandomActivations(int64_t n, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(n);
  for (auto& v : x) v = normal(rng);
  x[n / 3] = 25.0f;  // an outlier, as real activations have
  return x;
}

}  // namespace tokenfab::testing

#endif  // TOKENFAB_TESTS_WORKER_KERNELS_KERNEL_TEST_UTIL_H_
