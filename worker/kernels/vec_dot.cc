#include "worker/kernels/vec_dot.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/half.h"
#include "worker/kernels/cpu_features.h"
#include "worker/kernels/quant_blocks.h"
#include "worker/kernels/vec_dot_internal.h"

namespace tokenfab {
namespace {

// Round half to even, as the SIMD rounding instructions do.
inline int RoundToInt(float v) { return static_cast<int>(std::nearbyint(v)); }

void QuantizeQ8_0(const float* x, int64_t n, BlockQ8_0* out) {
  for (int64_t b = 0; b < n / kQBlock; ++b, x += kQBlock) {
    float amax = 0;
    for (int j = 0; j < kQBlock; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.0f;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    out[b].d = Fp32ToFp16(d);
    for (int j = 0; j < kQBlock; ++j) out[b].qs[j] = static_cast<int8_t>(RoundToInt(x[j] * id));
  }
}

void QuantizeQ8_1(const float* x, int64_t n, BlockQ8_1* out) {
  for (int64_t b = 0; b < n / kQBlock; ++b, x += kQBlock) {
    float amax = 0;
    for (int j = 0; j < kQBlock; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.0f;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    int sum = 0;
    for (int j = 0; j < kQBlock; ++j) {
      out[b].qs[j] = static_cast<int8_t>(RoundToInt(x[j] * id));
      sum += out[b].qs[j];
    }
    out[b].d = Fp32ToFp16(d);
    out[b].s = Fp32ToFp16(d * static_cast<float>(sum));
  }
}

void QuantizeQ8_K(const float* x, int64_t n, BlockQ8_K* out) {
  for (int64_t b = 0; b < n / kKBlock; ++b, x += kKBlock) {
    float amax = 0, max = 0;
    for (int j = 0; j < kKBlock; ++j) {
      if (std::fabs(x[j]) > amax) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    }
    if (amax == 0) {
      std::memset(&out[b], 0, sizeof(BlockQ8_K));
      continue;
    }
    const float iscale = -127.0f / max;
    for (int j = 0; j < kKBlock; ++j) {
      out[b].qs[j] = static_cast<int8_t>(std::clamp(RoundToInt(iscale * x[j]), -127, 127));
    }
    for (int g = 0; g < kKBlock / 16; ++g) {
      int sum = 0;
      for (int j = 0; j < 16; ++j) sum += out[b].qs[16 * g + j];
      out[b].bsums[g] = static_cast<int16_t>(sum);
    }
    out[b].d = 1.0f / iscale;
  }
}

}  // namespace

ActFormat ActivationFormatFor(DType type) {
  switch (type) {
    case DType::kQ4_0:
    case DType::kQ5_0:
    case DType::kQ8_0: return ActFormat::kQ8_0;
    case DType::kQ4_1:
    case DType::kQ5_1: return ActFormat::kQ8_1;
    case DType::kQ4_K:
    case DType::kQ6_K: return ActFormat::kQ8_K;
    case DType::kF32:
    case DType::kF16:
    case DType::kBF16: return ActFormat::kF32;
  }
  return ActFormat::kF32;
}

int64_t ActivationRowBytes(ActFormat format, int64_t n) {
  switch (format) {
    case ActFormat::kF32: return n * static_cast<int64_t>(sizeof(float));
    case ActFormat::kQ8_0: return n / kQBlock * static_cast<int64_t>(sizeof(BlockQ8_0));
    case ActFormat::kQ8_1: return n / kQBlock * static_cast<int64_t>(sizeof(BlockQ8_1));
    case ActFormat::kQ8_K: return n / kKBlock * static_cast<int64_t>(sizeof(BlockQ8_K));
  }
  return 0;
}

void QuantizeActivations(ActFormat format, const float* x, int64_t n, uint8_t* out) {
  switch (format) {
    case ActFormat::kF32: std::memcpy(out, x, n * sizeof(float)); return;
    case ActFormat::kQ8_0: QuantizeQ8_0(x, n, reinterpret_cast<BlockQ8_0*>(out)); return;
    case ActFormat::kQ8_1: QuantizeQ8_1(x, n, reinterpret_cast<BlockQ8_1*>(out)); return;
    case ActFormat::kQ8_K: QuantizeQ8_K(x, n, reinterpret_cast<BlockQ8_K*>(out)); return;
  }
}

DotKernel GetDotKernel(DType type) {
  if (kernels_internal::CpuHasAvx2()) {
    if (DotKernel k = kernels_internal::Avx2Kernel(type)) return k;
  }
  return kernels_internal::ReferenceKernel(type);
}

DotKernel GetReferenceDotKernel(DType type) { return kernels_internal::ReferenceKernel(type); }

float DotF32(const float* a, const float* b, int64_t n) {
  static const DotKernel k = GetDotKernel(DType::kF32);
  return k(reinterpret_cast<const uint8_t*>(b), reinterpret_cast<const uint8_t*>(a), n);
}

float DotF32F16(const float* a, const uint16_t* b, int64_t n) {
  static const DotKernel k = GetDotKernel(DType::kF16);
  return k(reinterpret_cast<const uint8_t*>(b), reinterpret_cast<const uint8_t*>(a), n);
}

}  // namespace tokenfab
