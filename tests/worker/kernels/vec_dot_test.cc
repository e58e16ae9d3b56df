#include "worker/kernels/vec_dot.h"

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "common/half.h"
#include "gtest/gtest.h"
#include "worker/kernels/dequantize.h"
#include "worker/kernels/quant_blocks.h"
#include "worker/model/tensor_types.h"

namespace tokenfab {
namespace {

constexpr DType kAllTypes[] = {DType::kF32,  DType::kF16,  DType::kBF16, DType::kQ4_0, DType::kQ4_1,
                               DType::kQ5_0, DType::kQ5_1, DType::kQ8_0, DType::kQ4_K, DType::kQ6_K};

uint32_t Seed() {
  const uint32_t seed = std::random_device{}();
  std::printf("vec_dot_test seed: %u\n", seed);
  return seed;
}

// A random but valid row of `type`: random quant bits, small finite scales.
std::vector<uint8_t> RandomRow(DType type, int64_t n, std::mt19937& rng) {
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

std::vector<float> RandomActivations(int64_t n, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(n);
  for (auto& v : x) v = normal(rng);
  x[n / 3] = 25.0f;  // an outlier, as real activations have
  return x;
}

// The float values an activation row in `format` stands for.
std::vector<float> DequantizeActivations(ActFormat format, const uint8_t* q, int64_t n) {
  std::vector<float> out(n);
  switch (format) {
    case ActFormat::kF32: std::memcpy(out.data(), q, n * 4); break;
    case ActFormat::kQ8_0: {
      const auto* b = reinterpret_cast<const BlockQ8_0*>(q);
      for (int64_t i = 0; i < n; ++i) out[i] = Fp16ToFp32(b[i / 32].d) * b[i / 32].qs[i % 32];
      break;
    }
    case ActFormat::kQ8_1: {
      const auto* b = reinterpret_cast<const BlockQ8_1*>(q);
      for (int64_t i = 0; i < n; ++i) out[i] = Fp16ToFp32(b[i / 32].d) * b[i / 32].qs[i % 32];
      break;
    }
    case ActFormat::kQ8_K: {
      const auto* b = reinterpret_cast<const BlockQ8_K*>(q);
      for (int64_t i = 0; i < n; ++i) out[i] = b[i / 256].d * b[i / 256].qs[i % 256];
      break;
    }
  }
  return out;
}

TEST(VecDotTest, SimdKernelsEqualTheReferenceBitForBit) {
  std::mt19937 rng(Seed());
  for (DType type : kAllTypes) {
    SCOPED_TRACE(std::string(Traits(type).name));
    for (int64_t n : {256, 512, 1536, 2304}) {
      const std::vector<uint8_t> w = RandomRow(type, n, rng);
      const std::vector<float> x = RandomActivations(n, rng);
      const ActFormat f = ActivationFormatFor(type);
      std::vector<uint8_t> xq(ActivationRowBytes(f, n));
      QuantizeActivations(f, x.data(), n, xq.data());
      const float simd = GetDotKernel(type)(w.data(), xq.data(), n);
      const float ref = GetReferenceDotKernel(type)(w.data(), xq.data(), n);
      EXPECT_EQ(simd, ref) << "n=" << n;
    }
  }
}

TEST(VecDotTest, FloatDotHandlesEveryLength) {
  std::mt19937 rng(Seed());
  for (int64_t n = 1; n <= 70; ++n) {
    const std::vector<uint8_t> w = RandomRow(DType::kF32, n, rng);
    const std::vector<float> x = RandomActivations(std::max<int64_t>(n, 3), rng);
    const float simd = GetDotKernel(DType::kF32)(w.data(), reinterpret_cast<const uint8_t*>(x.data()), n);
    const float ref = GetReferenceDotKernel(DType::kF32)(w.data(), reinterpret_cast<const uint8_t*>(x.data()), n);
    EXPECT_EQ(simd, ref) << "n=" << n;
    double exact = 0;
    const float* wf = reinterpret_cast<const float*>(w.data());
    for (int64_t i = 0; i < n; ++i) exact += static_cast<double>(wf[i]) * x[i];
    EXPECT_NEAR(ref, exact, 1e-4 + 1e-5 * std::fabs(exact)) << "n=" << n;
  }
}

// With the activations as quantized, the kernel's integer and scale
// arithmetic must equal the float dot of the two dequantized rows.
TEST(VecDotTest, KernelEqualsDotOfDequantizedRows) {
  std::mt19937 rng(Seed());
  for (DType type : kAllTypes) {
    SCOPED_TRACE(std::string(Traits(type).name));
    const int64_t n = 1024;
    const std::vector<uint8_t> w = RandomRow(type, n, rng);
    const std::vector<float> x = RandomActivations(n, rng);
    const ActFormat f = ActivationFormatFor(type);
    std::vector<uint8_t> xq(ActivationRowBytes(f, n));
    QuantizeActivations(f, x.data(), n, xq.data());
    std::vector<float> wd(n);
    DequantizeRow(type, w.data(), wd.data(), n);
    const std::vector<float> xd = DequantizeActivations(f, xq.data(), n);
    double exact = 0, magnitude = 0;
    for (int64_t i = 0; i < n; ++i) {
      exact += static_cast<double>(wd[i]) * xd[i];
      magnitude += std::fabs(static_cast<double>(wd[i]) * xd[i]);
    }
    if (f == ActFormat::kQ8_1) {
      // The min term uses the block sum s = d * sum(q) as stored (rounded to
      // half, as llama.cpp stores it), not the sum of the dequantized values.
      const auto* xb = reinterpret_cast<const BlockQ8_1*>(xq.data());
      const int64_t wblock = Traits(type).block_bytes;
      for (int64_t b = 0; b < n / 32; ++b) {
        uint16_t m16;
        std::memcpy(&m16, w.data() + b * wblock + 2, 2);
        const double m = Fp16ToFp32(m16);
        double xsum = 0;
        for (int64_t i = 32 * b; i < 32 * b + 32; ++i) xsum += xd[i];
        exact += m * (Fp16ToFp32(xb[b].s) - xsum);
      }
    }
    const float got = GetDotKernel(type)(w.data(), xq.data(), n);
    // Float rounding of per-block scales and sums only.
    EXPECT_NEAR(got, exact, 1e-5 * magnitude + 1e-6);
    // Against the unquantized activations: within 8-bit rounding of x.
    double raw = 0;
    for (int64_t i = 0; i < n; ++i) raw += static_cast<double>(wd[i]) * x[i];
    EXPECT_NEAR(got, raw, 0.02 * magnitude + 1e-6);
  }
}

TEST(VecDotTest, QuantizedActivationsRoundTrip) {
  std::mt19937 rng(Seed());
  const int64_t n = 512;
  const std::vector<float> x = RandomActivations(n, rng);
  for (ActFormat f : {ActFormat::kQ8_0, ActFormat::kQ8_1, ActFormat::kQ8_K}) {
    std::vector<uint8_t> q(ActivationRowBytes(f, n));
    QuantizeActivations(f, x.data(), n, q.data());
    const std::vector<float> back = DequantizeActivations(f, q.data(), n);
    const int64_t block = f == ActFormat::kQ8_K ? 256 : 32;
    for (int64_t b = 0; b < n / block; ++b) {
      float amax = 0;
      for (int64_t i = b * block; i < (b + 1) * block; ++i) amax = std::max(amax, std::fabs(x[i]));
      for (int64_t i = b * block; i < (b + 1) * block; ++i) {
        // Half a quantization step, plus the scale's own rounding to half.
        EXPECT_NEAR(back[i], x[i], amax / 127.0f * 0.5f + std::fabs(x[i]) * 1e-3f + 1e-6f);
      }
    }
    if (f == ActFormat::kQ8_K) {
      const auto* b = reinterpret_cast<const BlockQ8_K*>(q.data());
      for (int g = 0; g < 16; ++g) {
        int sum = 0;
        for (int j = 0; j < 16; ++j) sum += b[0].qs[16 * g + j];
        EXPECT_EQ(b[0].bsums[g], sum);
      }
    }
  }
}

TEST(VecDotTest, ZeroActivationsGiveZero) {
  std::mt19937 rng(Seed());
  for (DType type : kAllTypes) {
    const int64_t n = 256;
    const std::vector<uint8_t> w = RandomRow(type, n, rng);
    const std::vector<float> x(n, 0.0f);
    const ActFormat f = ActivationFormatFor(type);
    std::vector<uint8_t> xq(ActivationRowBytes(f, n));
    QuantizeActivations(f, x.data(), n, xq.data());
    EXPECT_EQ(GetDotKernel(type)(w.data(), xq.data(), n), 0.0f) << Traits(type).name;
  }
}

}  // namespace
}  // namespace tokenfab
