#include "worker/kernels/vec_dot.h"

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "common/half.h"
#include "gtest/gtest.h"
#include "tests/worker/kernels/kernel_test_util.h"
#include "worker/kernels/dequantize.h"
#include "worker/kernels/quant_blocks.h"
#include "worker/model/tensor_types.h"

namespace tokenfab {
namespace {

using testing::kAllTypes;
using testing::RandomActivations;
using testing::RandomRow;

uint32_t Seed() { return testing::Seed("vec_dot_test"); }

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
