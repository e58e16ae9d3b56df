// AVX2/FMA/F16C dot kernels. Integer products within a block are exact, and
// blocks and float lanes are accumulated in the order vec_dot_reference.cc
// defines, so results equal the reference bit for bit.
#include <cmath>
#include <cstring>

#include "common/half.h"
#include "worker/kernels/quant_blocks.h"
#include "worker/kernels/vec_dot_internal.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>

namespace tokenfab::kernels_internal {
namespace {

inline int HorizontalSum(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm_cvtsi128_si32(s);
}

// Sums of adjacent products of unsigned bytes `u` and signed bytes `s`, as
// eight int32 lanes. Pair sums stay far below int16 saturation for our ranges.
inline __m256i DotU8I8(__m256i u, __m256i s) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

// The same for two signed byte vectors: move the sign of `a` onto `b`.
// `b` must not hold -128 (activations are clamped to [-127, 127]).
inline __m256i DotI8I8(__m256i a, __m256i b) {
  return DotU8I8(_mm256_sign_epi8(a, a), _mm256_sign_epi8(b, a));
}

// 16 packed bytes of two nibbles -> 32 bytes: low nibbles (elements 0..15)
// then high nibbles (elements 16..31).
inline __m256i UnpackNibbles(const uint8_t* p) {
  const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m256i both = _mm256_set_m128i(_mm_srli_epi16(q, 4), q);
  return _mm256_and_si256(both, _mm256_set1_epi8(0x0f));
}

// 32 bits -> 32 bytes, byte k = 0x10 if bit k is set (the fifth bit of Q5).
inline __m256i FifthBits(const uint8_t* p) {
  uint32_t bits;
  std::memcpy(&bits, p, 4);
  const __m256i spread = _mm256_shuffle_epi8(
      _mm256_set1_epi32(static_cast<int>(bits)),
      _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0));
  const __m256i bit = _mm256_set1_epi64x(static_cast<int64_t>(0x8040201008040201ull));
  const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
  return _mm256_and_si256(set, _mm256_set1_epi8(0x10));
}

inline __m256i LoadBytes(const void* p) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}

float DotQ4_0(const uint8_t* w, const uint8_t* x, int64_t n) {
  const auto* wb = reinterpret_cast<const BlockQ4_0*>(w);
  const auto* xb = reinterpret_cast<const BlockQ8_0*>(x);
  float sum = 0;
  for (int64_t b = 0; b < n / kQBlock; ++b) {
    const __m256i q = _mm256_sub_epi8(UnpackNibbles(wb[b].qs), _mm256_set1_epi8(8));
    const int isum = HorizontalSum(DotI8I8(q, LoadBytes(xb[b].qs)));
    sum += (Fp16ToFp32(wb[b].d) * Fp16ToFp32(xb[b].d)) * static_cast<float>(isum);
  }
  return sum;
}

float DotQ4_1(const uint8_t* w, const uint8_t* x, int64_t n) {
  const auto* wb = reinterpret_cast<const BlockQ4_1*>(w);
  const auto* xb = reinterpret_cast<const BlockQ8_1*>(x);
  float sum = 0;
  for (int64_t b = 0; b < n / kQBlock; ++b) {
    const int isum = HorizontalSum(DotU8I8(UnpackNibbles(wb[b].qs), LoadBytes(xb[b].qs)));
    sum += (Fp16ToFp32(wb[b].d) * Fp16ToFp32(xb[b].d)) * static_cast<float>(isum) +
           Fp16ToFp32(wb[b].m) * Fp16ToFp32(xb[b].s);
  }
  return sum;
}

float DotQ5_0(const uint8_t* w, const uint8_t* x, int64_t n) {
  const auto* wb = reinterpret_cast<const BlockQ5_0*>(w);
  const auto* xb = reinterpret_cast<const BlockQ8_0*>(x);
  float sum = 0;
  for (int64_t b = 0; b < n / kQBlock; ++b) {
    const __m256i q = _mm256_sub_epi8(_mm256_or_si256(UnpackNibbles(wb[b].qs), FifthBits(wb[b].qh)),
                                      _mm256_set1_epi8(16));
    const int isum = HorizontalSum(DotI8I8(q, LoadBytes(xb[b].qs)));
    sum += (Fp16ToFp32(wb[b].d) * Fp16ToFp32(xb[b].d)) * static_cast<float>(isum);
  }
  return sum;
}

float DotQ5_1(const uint8_t* w, const uint8_t* x, int64_t n) {
  const auto* wb = reinterpret_cast<const BlockQ5_1*>(w);
  const auto* xb = reinterpret_cast<const BlockQ8_1*>(x);
  float sum = 0;
  for (int64_t b = 0; b < n / kQBlock; ++b) {
    const __m256i q = _mm256_or_si256(UnpackNibbles(wb[b].qs), FifthBits(wb[b].qh));
    const int isum = HorizontalSum(DotU8I8(q, LoadBytes(xb[b].qs)));
    sum += (Fp16ToFp32(wb[b].d) * Fp16ToFp32(xb[b].d)) * static_cast<float>(isum) +
           Fp16ToFp32(wb[b].m) * Fp16ToFp32(xb[b].s);
  }
  return sum;
}

float DotQ8_0(const uint8_t* w, const uint8_t* x, int64_t n) {
  const auto* wb = reinterpret_cast<const BlockQ8_0*>(w);
  const auto* xb = reinterpret_cast<const BlockQ8_0*>(x);
  float sum = 0;
  for (int64_t b = 0; b < n / kQBlock; ++b) {
    const int isum = HorizontalSum(DotI8I8(LoadBytes(wb[b].qs), LoadBytes(xb[b].qs)));
    sum += (Fp16ToFp32(wb[b].d) * Fp16ToFp32(xb[b].d)) * static_cast<float>(isum);
  }
  return sum;
}

float DotQ4_K(const uint8_t* w, const uint8_t* x, int64_t n) {
  const auto* wb = reinterpret_cast<const BlockQ4_K*>(w);
  const auto* xb = reinterpret_cast<const BlockQ8_K*>(x);
  const __m256i low_mask = _mm256_set1_epi8(0x0f);
  float sum = 0;
  for (int64_t b = 0; b < n / kKBlock; ++b) {
    __m256i acc = _mm256_setzero_si256();
    int msum = 0;
    for (int c = 0; c < 4; ++c) {
      int sc0, m0, sc1, m1;
      Q4KScaleMin(wb[b].scales, 2 * c, &sc0, &m0);
      Q4KScaleMin(wb[b].scales, 2 * c + 1, &sc1, &m1);
      const __m256i q = LoadBytes(wb[b].qs + 32 * c);
      const __m256i lo = _mm256_and_si256(q, low_mask);
      const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), low_mask);
      const __m256i p0 = _mm256_maddubs_epi16(lo, LoadBytes(xb[b].qs + 64 * c));
      const __m256i p1 = _mm256_maddubs_epi16(hi, LoadBytes(xb[b].qs + 64 * c + 32));
      acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p0, _mm256_set1_epi16(static_cast<int16_t>(sc0))));
      acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p1, _mm256_set1_epi16(static_cast<int16_t>(sc1))));
      msum += m0 * (xb[b].bsums[4 * c] + xb[b].bsums[4 * c + 1]) +
              m1 * (xb[b].bsums[4 * c + 2] + xb[b].bsums[4 * c + 3]);
    }
    const int isum = HorizontalSum(acc);
    sum += (Fp16ToFp32(wb[b].d) * xb[b].d) * static_cast<float>(isum) -
           (Fp16ToFp32(wb[b].dmin) * xb[b].d) * static_cast<float>(msum);
  }
  return sum;
}

float DotQ6_K(const uint8_t* w, const uint8_t* x, int64_t n) {
  const auto* wb = reinterpret_cast<const BlockQ6_K*>(w);
  const auto* xb = reinterpret_cast<const BlockQ8_K*>(x);
  const __m256i low_mask = _mm256_set1_epi8(0x0f);
  const __m256i two_bits = _mm256_set1_epi8(0x03);
  float sum = 0;
  for (int64_t b = 0; b < n / kKBlock; ++b) {
    __m256i acc = _mm256_setzero_si256();
    for (int half = 0; half < 2; ++half) {
      const int8_t* sc = wb[b].scales + 8 * half;
      const __m256i ql0 = LoadBytes(wb[b].ql + 64 * half);
      const __m256i ql1 = LoadBytes(wb[b].ql + 64 * half + 32);
      const __m256i qh = LoadBytes(wb[b].qh + 32 * half);
      const __m256i q[4] = {
          _mm256_or_si256(_mm256_and_si256(ql0, low_mask),
                          _mm256_slli_epi16(_mm256_and_si256(qh, two_bits), 4)),
          _mm256_or_si256(_mm256_and_si256(ql1, low_mask),
                          _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), two_bits), 4)),
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), low_mask),
                          _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), two_bits), 4)),
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), low_mask),
                          _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), two_bits), 4)),
      };
      for (int k = 0; k < 4; ++k) {
        const __m256i p = _mm256_maddubs_epi16(q[k], LoadBytes(xb[b].qs + 128 * half + 32 * k));
        const __m256i scales = _mm256_set_m128i(_mm_set1_epi16(sc[2 * k + 1]), _mm_set1_epi16(sc[2 * k]));
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, scales));
      }
    }
    // q - 32 folded out: sum((q - 32) * y) = sum(q * y) - 32 * sum(y).
    int offset = 0;
    for (int g = 0; g < 16; ++g) offset += wb[b].scales[g] * xb[b].bsums[g];
    const int isum = HorizontalSum(acc) - 32 * offset;
    sum += (Fp16ToFp32(wb[b].d) * xb[b].d) * static_cast<float>(isum);
  }
  return sum;
}

inline float Reduce(__m256 a0, __m256 a1, __m256 a2, __m256 a3) {
  const __m256 v = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
  const __m128 t = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 u = _mm_add_ps(t, _mm_movehl_ps(t, t));
  return _mm_cvtss_f32(_mm_add_ss(u, _mm_shuffle_ps(u, u, 1)));
}

// Float dot in the shared order; Load8(i) yields elements i..i+7 of the
// weight row as floats, Load1(i) one element.
template <typename Load8, typename Load1>
inline float FloatDot(const float* x, Load8 load8, Load1 load1, int64_t n) {
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  int64_t i = 0;
  const int64_t n32 = n - n % 32;
  for (; i < n32; i += 32) {
    a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), load8(i), a0);
    a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), load8(i + 8), a1);
    a2 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 16), load8(i + 16), a2);
    a3 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 24), load8(i + 24), a3);
  }
  for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), load8(i), a0);
  float s = Reduce(a0, a1, a2, a3);
  for (; i < n; ++i) s = std::fma(x[i], load1(i), s);
  return s;
}

float DotF32(const uint8_t* w, const uint8_t* x, int64_t n) {
  const float* wf = reinterpret_cast<const float*>(w);
  return FloatDot(
      reinterpret_cast<const float*>(x), [wf](int64_t i) { return _mm256_loadu_ps(wf + i); },
      [wf](int64_t i) { return wf[i]; }, n);
}

float DotF16(const uint8_t* w, const uint8_t* x, int64_t n) {
  const uint16_t* wh = reinterpret_cast<const uint16_t*>(w);
  return FloatDot(
      reinterpret_cast<const float*>(x),
      [wh](int64_t i) {
        return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(wh + i)));
      },
      [w](int64_t i) {
        uint16_t h;
        std::memcpy(&h, w + 2 * i, 2);
        return Fp16ToFp32(h);
      },
      n);
}

float DotBF16(const uint8_t* w, const uint8_t* x, int64_t n) {
  const uint16_t* wh = reinterpret_cast<const uint16_t*>(w);
  return FloatDot(
      reinterpret_cast<const float*>(x),
      [wh](int64_t i) {
        const __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(wh + i)));
        return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
      },
      [w](int64_t i) {
        uint16_t h;
        std::memcpy(&h, w + 2 * i, 2);
        return Bf16ToFp32(h);
      },
      n);
}

}  // namespace

DotKernel Avx2Kernel(DType type) {
  switch (type) {
    case DType::kF32: return DotF32;
    case DType::kF16: return DotF16;
    case DType::kBF16: return DotBF16;
    case DType::kQ4_0: return DotQ4_0;
    case DType::kQ4_1: return DotQ4_1;
    case DType::kQ5_0: return DotQ5_0;
    case DType::kQ5_1: return DotQ5_1;
    case DType::kQ8_0: return DotQ8_0;
    case DType::kQ4_K: return DotQ4_K;
    case DType::kQ6_K: return DotQ6_K;
  }
  return nullptr;
}

}  // namespace tokenfab::kernels_internal

#else  // no AVX2 in this build

namespace tokenfab::kernels_internal {
DotKernel Avx2Kernel(DType) { return nullptr; }
}  // namespace tokenfab::kernels_internal

#endif
