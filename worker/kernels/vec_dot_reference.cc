// Portable scalar dot kernels: the definition of every kernel's result. The
// AVX2 kernels reproduce these sums bit for bit.
#include <cmath>
#include <cstring>

#include "common/half.h"
#include "worker/kernels/quant_blocks.h"
#include "worker/kernels/vec_dot_internal.h"

namespace tokenfab::kernels_internal {

float ReduceLanes(const float acc[kFloatAccumulators][kFloatLanes]) {
  float v[kFloatLanes];
  for (int l = 0; l < kFloatLanes; ++l) v[l] = (acc[0][l] + acc[1][l]) + (acc[2][l] + acc[3][l]);
  float t[4];
  for (int k = 0; k < 4; ++k) t[k] = v[k] + v[k + 4];
  const float u0 = t[0] + t[2];
  const float u1 = t[1] + t[3];
  return u0 + u1;
}

namespace {

// Float dot in the shared accumulation order; `Load` turns element i of the
// weight row into float.
template <typename Load>
float FloatDot(const float* x, Load w, int64_t n) {
  float acc[kFloatAccumulators][kFloatLanes] = {};
  int64_t i = 0;
  const int64_t n32 = n - n % (kFloatAccumulators * kFloatLanes);
  for (; i < n32; i += kFloatAccumulators * kFloatLanes) {
    for (int a = 0; a < kFloatAccumulators; ++a) {
      for (int l = 0; l < kFloatLanes; ++l) {
        const int64_t k = i + a * kFloatLanes + l;
        acc[a][l] = std::fma(x[k], w(k), acc[a][l]);
      }
    }
  }
  for (; i + kFloatLanes <= n; i += kFloatLanes) {
    for (int l = 0; l < kFloatLanes; ++l) acc[0][l] = std::fma(x[i + l], w(i + l), acc[0][l]);
  }
  float s = ReduceLanes(acc);
  for (; i < n; ++i) s = std::fma(x[i], w(i), s);
  return s;
}

uint16_t Load16(const uint8_t* p, int64_t i) {
  uint16_t h;
  std::memcpy(&h, p + 2 * i, 2);
  return h;
}

float DotF32Ref(const uint8_t* w, const uint8_t* x, int64_t n) {
  const float* wf = reinterpret_cast<const float*>(w);
  return FloatDot(reinterpret_cast<const float*>(x), [wf](int64_t i) { return wf[i]; }, n);
}

float DotF16Ref(const uint8_t* w, const uint8_t* x, int64_t n) {
  return FloatDot(reinterpret_cast<const float*>(x),
                  [w](int64_t i) { return Fp16ToFp32(Load16(w, i)); }, n);
}

float DotBF16Ref(const uint8_t* w, const uint8_t* x, int64_t n) {
  return FloatDot(reinterpret_cast<const float*>(x),
                  [w](int64_t i) { return Bf16ToFp32(Load16(w, i)); }, n);
}

uint32_t Load32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

float DotQ4_0Ref(const uint8_t* w, const uint8_t* x, int64_t n) {
  const auto* wb = reinterpret_cast<const BlockQ4_0*>(w);
  const auto* xb = reinterpret_cast<const BlockQ8_0*>(x);
  float sum = 0;
  for (int64_t b = 0; b < n / kQBlock; ++b) {
    int isum = 0;
    for (int j = 0; j < 16; ++j) {
      isum += ((wb[b].qs[j] & 0x0f) - 8) * xb[b].qs[j];
      isum += ((wb[b].qs[j] >> 4) - 8) * xb[b].qs[j + 16];
    }
    sum += (Fp16ToFp32(wb[b].d) * Fp16ToFp32(xb[b].d)) * static_cast<float>(isum);
  }
  return sum;
}

float DotQ4_1Ref(const uint8_t* w, const uint8_t* x, int64_t n) {
  const auto* wb = reinterpret_cast<const BlockQ4_1*>(w);
  const auto* xb = reinterpret_cast<const BlockQ8_1*>(x);
  float sum = 0;
  for (int64_t b = 0; b < n / kQBlock; ++b) {
    int isum = 0;
    for (int j = 0; j < 16; ++j) {
      isum += (wb[b].qs[j] & 0x0f) * xb[b].qs[j];
      isum += (wb[b].qs[j] >> 4) * xb[b].qs[j + 16];
    }
    sum += (Fp16ToFp32(wb[b].d) * Fp16ToFp32(xb[b].d)) * static_cast<float>(isum) +
           Fp16ToFp32(wb[b].m) * Fp16ToFp32(xb[b].s);
  }
  return sum;
}

float DotQ5_0Ref(const uint8_t* w, const uint8_t* x, int64_t n) {
  const auto* wb = reinterpret_cast<const BlockQ5_0*>(w);
  const auto* xb = reinterpret_cast<const BlockQ8_0*>(x);
  float sum = 0;
  for (int64_t b = 0; b < n / kQBlock; ++b) {
    const uint32_t qh = Load32(wb[b].qh);
    int isum = 0;
    for (int j = 0; j < 16; ++j) {
      const int lo = ((wb[b].qs[j] & 0x0f) | (((qh >> j) & 1) << 4)) - 16;
      const int hi = ((wb[b].qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4)) - 16;
      isum += lo * xb[b].qs[j] + hi * xb[b].qs[j + 16];
    }
    sum += (Fp16ToFp32(wb[b].d) * Fp16ToFp32(xb[b].d)) * static_cast<float>(isum);
  }
  return sum;
}

float DotQ5_1Ref(const uint8_t* w, const uint8_t* x, int64_t n) {
  const auto* wb = reinterpret_cast<const BlockQ5_1*>(w);
  const auto* xb = reinterpret_cast<const BlockQ8_1*>(x);
  float sum = 0;
  for (int64_t b = 0; b < n / kQBlock; ++b) {
    const uint32_t qh = Load32(wb[b].qh);
    int isum = 0;
    for (int j = 0; j < 16; ++j) {
      const int lo = (wb[b].qs[j] & 0x0f) | (((qh >> j) & 1) << 4);
      const int hi = (wb[b].qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
      isum += lo * xb[b].qs[j] + hi * xb[b].qs[j + 16];
    }
    sum += (Fp16ToFp32(wb[b].d) * Fp16ToFp32(xb[b].d)) * static_cast<float>(isum) +
           Fp16ToFp32(wb[b].m) * Fp16ToFp32(xb[b].s);
  }
  return sum;
}

float DotQ8_0Ref(const uint8_t* w, const uint8_t* x, int64_t n) {
  const auto* wb = reinterpret_cast<const BlockQ8_0*>(w);
  const auto* xb = reinterpret_cast<const BlockQ8_0*>(x);
  float sum = 0;
  for (int64_t b = 0; b < n / kQBlock; ++b) {
    int isum = 0;
    for (int j = 0; j < kQBlock; ++j) isum += wb[b].qs[j] * xb[b].qs[j];
    sum += (Fp16ToFp32(wb[b].d) * Fp16ToFp32(xb[b].d)) * static_cast<float>(isum);
  }
  return sum;
}

float DotQ4_KRef(const uint8_t* w, const uint8_t* x, int64_t n) {
  const auto* wb = reinterpret_cast<const BlockQ4_K*>(w);
  const auto* xb = reinterpret_cast<const BlockQ8_K*>(x);
  float sum = 0;
  for (int64_t b = 0; b < n / kKBlock; ++b) {
    const uint8_t* q = wb[b].qs;
    const int8_t* y = xb[b].qs;
    int isum = 0, msum = 0;
    for (int c = 0; c < 4; ++c, q += 32, y += 64) {
      int sc0, m0, sc1, m1;
      Q4KScaleMin(wb[b].scales, 2 * c, &sc0, &m0);
      Q4KScaleMin(wb[b].scales, 2 * c + 1, &sc1, &m1);
      int s0 = 0, s1 = 0;
      for (int l = 0; l < 32; ++l) {
        s0 += (q[l] & 0x0f) * y[l];
        s1 += (q[l] >> 4) * y[l + 32];
      }
      isum += sc0 * s0 + sc1 * s1;
      msum += m0 * (xb[b].bsums[4 * c] + xb[b].bsums[4 * c + 1]) +
              m1 * (xb[b].bsums[4 * c + 2] + xb[b].bsums[4 * c + 3]);
    }
    sum += (Fp16ToFp32(wb[b].d) * xb[b].d) * static_cast<float>(isum) -
           (Fp16ToFp32(wb[b].dmin) * xb[b].d) * static_cast<float>(msum);
  }
  return sum;
}

float DotQ6_KRef(const uint8_t* w, const uint8_t* x, int64_t n) {
  const auto* wb = reinterpret_cast<const BlockQ6_K*>(w);
  const auto* xb = reinterpret_cast<const BlockQ8_K*>(x);
  float sum = 0;
  for (int64_t b = 0; b < n / kKBlock; ++b) {
    int isum = 0;
    for (int half = 0; half < 2; ++half) {
      const uint8_t* ql = wb[b].ql + 64 * half;
      const uint8_t* qh = wb[b].qh + 32 * half;
      const int8_t* sc = wb[b].scales + 8 * half;
      const int8_t* y = xb[b].qs + 128 * half;
      for (int k = 0; k < 4; ++k) {
        for (int g = 0; g < 2; ++g) {
          int s = 0;
          for (int l = 16 * g; l < 16 * g + 16; ++l) {
            const int low = k % 2 == 0 ? ql[l] : ql[l + 32];
            const int q = ((k < 2 ? low & 0x0f : low >> 4) | (((qh[l] >> (2 * k)) & 3) << 4)) - 32;
            s += q * y[32 * k + l];
          }
          isum += sc[2 * k + g] * s;
        }
      }
    }
    sum += (Fp16ToFp32(wb[b].d) * xb[b].d) * static_cast<float>(isum);
  }
  return sum;
}

}  // namespace

DotKernel ReferenceKernel(DType type) {
  switch (type) {
    case DType::kF32: return DotF32Ref;
    case DType::kF16: return DotF16Ref;
    case DType::kBF16: return DotBF16Ref;
    case DType::kQ4_0: return DotQ4_0Ref;
    case DType::kQ4_1: return DotQ4_1Ref;
    case DType::kQ5_0: return DotQ5_0Ref;
    case DType::kQ5_1: return DotQ5_1Ref;
    case DType::kQ8_0: return DotQ8_0Ref;
    case DType::kQ4_K: return DotQ4_KRef;
    case DType::kQ6_K: return DotQ6_KRef;
  }
  return nullptr;
}

}  // namespace tokenfab::kernels_internal
