#include "worker/kernels/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "common/half.h"
#include "worker/kernels/vec_dot.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>
#define TOKENFAB_ATTENTION_AVX2 1
#endif

namespace tokenfab {
namespace {

// Cephes' expf: exp(x) = 2^n exp(r) with n = round(x log2(e)), r = x - n ln(2)
// (ln 2 in two parts), exp(r) = 1 + r + r^2 P(r).
constexpr float kExpLo = -88.0f, kExpHi = 88.0f;
constexpr float kLog2e = 1.44269504088896341f;
constexpr float kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;
constexpr float kP0 = 5.0000001201e-1f, kP1 = 1.6666665459e-1f, kP2 = 4.1665795894e-2f,
                kP3 = 8.3334519073e-3f, kP4 = 1.3981999507e-3f, kP5 = 1.9875691500e-4f;

constexpr int kLanes = 8;

int64_t Padded(int32_t n_ctx) { return (static_cast<int64_t>(n_ctx) + kLanes - 1) / kLanes * kLanes; }

const void* KRow(const KvLayerView& kv, const void* base, const int32_t* table, int32_t kv_head,
                 int32_t j) {
  const int64_t off = kv.Offset(table[j / kv.block_size], kv_head, j % kv.block_size);
  return kv.dtype == KvDType::kF16 ? static_cast<const void*>(static_cast<const uint16_t*>(base) + off)
                                   : static_cast<const void*>(static_cast<const float*>(base) + off);
}

#if defined(TOKENFAB_ATTENTION_AVX2)

// The lane-wise twin of SoftmaxExp: the same operations in the same order.
inline __m256 Exp8(__m256 x) {
  // max_ps(c, x) and min_ps(c, x) return x when x is NaN, as the scalar
  // comparisons do.
  x = _mm256_max_ps(_mm256_set1_ps(kExpLo), x);
  x = _mm256_min_ps(_mm256_set1_ps(kExpHi), x);
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(kLog2e)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fmadd_ps(n, _mm256_set1_ps(-kLn2Hi), x);
  r = _mm256_fmadd_ps(n, _mm256_set1_ps(-kLn2Lo), r);
  __m256 p = _mm256_set1_ps(kP5);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP4));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP3));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP2));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP1));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP0));
  __m256 y = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r);
  y = _mm256_add_ps(y, _mm256_set1_ps(1.0f));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

// (acc0 + acc1) + (acc2 + acc3) of the float dot (vec_dot_internal.h) of q
// and k over hd (a multiple of 8) elements; QV yields q's 8-float piece c.
template <typename QV>
inline __m256 DotLanes(QV qv, const float* k, int32_t hd) {
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  int32_t i = 0;
  for (; i + 32 <= hd; i += 32) {
    a0 = _mm256_fmadd_ps(qv(i / 8), _mm256_loadu_ps(k + i), a0);
    a1 = _mm256_fmadd_ps(qv(i / 8 + 1), _mm256_loadu_ps(k + i + 8), a1);
    a2 = _mm256_fmadd_ps(qv(i / 8 + 2), _mm256_loadu_ps(k + i + 16), a2);
    a3 = _mm256_fmadd_ps(qv(i / 8 + 3), _mm256_loadu_ps(k + i + 24), a3);
  }
  for (; i + 8 <= hd; i += 8) a0 = _mm256_fmadd_ps(qv(i / 8), _mm256_loadu_ps(k + i), a0);
  return _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
}

// Lane i of the result = ReduceLanes' tree on v_i: lanes (k, k + 4), then
// (k, k + 2), then (0, 1). Float additions commute exactly, so pairing lane
// halves of two vectors at a time gives each lane the same tree.
inline __m256 HalfSums(__m256 x, __m256 y) {  // [x_lo + x_hi | y_hi + y_lo]
  return _mm256_add_ps(_mm256_blend_ps(x, y, 0xF0), _mm256_permute2f128_ps(x, y, 0x21));
}
inline __m256 QuarterSums(__m256 x, __m256 y) {  // lanes (k, k + 2) of x's and y's halves
  return _mm256_add_ps(_mm256_blend_ps(x, y, 0xCC),
                       _mm256_permute_ps(_mm256_blend_ps(x, y, 0x33), 0x4E));
}
inline __m256 PairSums(__m256 x, __m256 y) {  // lanes (0, 1)
  return _mm256_add_ps(_mm256_blend_ps(x, y, 0xAA),
                       _mm256_permute_ps(_mm256_blend_ps(x, y, 0x55), 0xB1));
}

// Scores of one head against 8 key rows: dot(q, k_i) * scale in lane i.
template <typename QV>
inline __m256 Scores8(QV qv, const float* const k[8], int32_t hd, __m256 scale) {
  const __m256 q0 = QuarterSums(HalfSums(DotLanes(qv, k[0], hd), DotLanes(qv, k[4], hd)),
                                HalfSums(DotLanes(qv, k[2], hd), DotLanes(qv, k[6], hd)));
  const __m256 q1 = QuarterSums(HalfSums(DotLanes(qv, k[1], hd), DotLanes(qv, k[5], hd)),
                                HalfSums(DotLanes(qv, k[3], hd), DotLanes(qv, k[7], hd)));
  return _mm256_mul_ps(PairSums(q0, q1), scale);
}

// Rows j0..j0+7 (the last valid row repeated past n_ctx) as float pointers,
// converting f16 rows into buf. With blocks a multiple of 8 slots long the
// eight rows are consecutive in one block.
void Rows8(const KvLayerView& kv, const void* base, const int32_t* table, int32_t kv_head,
           int32_t j0, int32_t n_ctx, float* buf, const float* rows[8]) {
  const int32_t hd = kv.head_dim;
  const int nv = std::min(kLanes, n_ctx - j0);
  const bool contiguous = kv.block_size % kLanes == 0;
  const void* first = KRow(kv, base, table, kv_head, j0);
  for (int i = 0; i < nv; ++i) {
    const void* src = contiguous ? static_cast<const void*>(static_cast<const char*>(first) +
                                                            static_cast<int64_t>(i) * hd *
                                                                (kv.dtype == KvDType::kF16 ? 2 : 4))
                                 : KRow(kv, base, table, kv_head, j0 + i);
    if (kv.dtype == KvDType::kF32) {
      rows[i] = static_cast<const float*>(src);
      continue;
    }
    const auto* h = static_cast<const uint16_t*>(src);
    for (int32_t d = 0; d < hd; d += 8) {
      _mm256_storeu_ps(buf + i * hd + d, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h + d))));
    }
    rows[i] = buf + i * hd;
  }
  for (int i = nv; i < kLanes; ++i) rows[i] = rows[nv - 1];
}

inline float MaxLane(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  return _mm_cvtss_f32(_mm_max_ss(m, _mm_shuffle_ps(m, m, 1)));
}

// Lanes j0 + i < n_ctx set.
inline __m256 ValidMask(int32_t j0, int32_t n_ctx) {
  const __m256i idx = _mm256_add_epi32(_mm256_set1_epi32(j0), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  return _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(n_ctx), idx));
}

template <int kHd>  // 0: any multiple of 8
void AttendGroupAvx2(const float* q, int32_t heads, int32_t kv_head, const int32_t* table,
                     int32_t n_ctx, const KvLayerView& kv, float scale, float* scratch, float* out) {
  const int32_t hd = kHd != 0 ? kHd : kv.head_dim;
  const int64_t padded = Padded(n_ctx);
  float* buf = scratch + heads * padded;
  const __m256 scale_v = _mm256_set1_ps(scale);

  // Scores, 8 positions at a time; each K row is converted once for all heads.
  for (int32_t j0 = 0; j0 < n_ctx; j0 += kLanes) {
    const float* k[8];
    Rows8(kv, kv.k, table, kv_head, j0, n_ctx, buf, k);
    for (int32_t h = 0; h < heads; ++h) {
      const float* qh = q + h * hd;
      __m256 s;
      if constexpr (kHd != 0) {
        __m256 qr[kHd / 8];
        for (int c = 0; c < kHd / 8; ++c) qr[c] = _mm256_loadu_ps(qh + 8 * c);
        s = Scores8([&qr](int c) { return qr[c]; }, k, hd, scale_v);
      } else {
        s = Scores8([qh](int c) { return _mm256_loadu_ps(qh + 8 * c); }, k, hd, scale_v);
      }
      _mm256_storeu_ps(scratch + h * padded + j0, s);
    }
  }

  // Softmax per head; the probabilities replace the scores.
  for (int32_t h = 0; h < heads; ++h) {
    float* s = scratch + h * padded;
    __m256 mx = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
    for (int32_t j0 = 0; j0 < n_ctx; j0 += kLanes) {
      mx = _mm256_max_ps(mx, _mm256_blendv_ps(mx, _mm256_loadu_ps(s + j0), ValidMask(j0, n_ctx)));
    }
    const __m256 m = _mm256_set1_ps(MaxLane(mx));
    __m256 lanes = _mm256_setzero_ps();
    for (int32_t j0 = 0; j0 < n_ctx; j0 += kLanes) {
      const __m256 e = _mm256_and_ps(Exp8(_mm256_sub_ps(_mm256_loadu_ps(s + j0), m)), ValidMask(j0, n_ctx));
      _mm256_storeu_ps(s + j0, e);
      lanes = _mm256_add_ps(lanes, e);
    }
    // ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7))
    const __m256 t = _mm256_add_ps(lanes, _mm256_permute_ps(lanes, 0xB1));
    const __m256 u = _mm256_add_ps(t, _mm256_permute_ps(t, 0x4E));
    const float sum = _mm256_cvtss_f32(u) + _mm_cvtss_f32(_mm256_extractf128_ps(u, 1));
    const __m256 inv = _mm256_set1_ps(1.0f / sum);
    for (int32_t j0 = 0; j0 < n_ctx; j0 += kLanes) _mm256_storeu_ps(s + j0, _mm256_mul_ps(_mm256_loadu_ps(s + j0), inv));
  }

  // out = fma(p_j, V_j, out) in position order; each V row converted once.
  std::memset(out, 0, sizeof(float) * heads * hd);
  for (int32_t j0 = 0; j0 < n_ctx; j0 += kLanes) {
    const float* v[8];
    Rows8(kv, kv.v, table, kv_head, j0, n_ctx, buf, v);
    const int nv = std::min(kLanes, n_ctx - j0);
    for (int32_t h = 0; h < heads; ++h) {
      const float* p = scratch + h * padded + j0;
      float* o = out + h * hd;
      for (int32_t d = 0; d < hd; d += 32) {
        const int32_t dn = std::min(32, hd - d);  // a multiple of 8
        __m256 acc[4];
        for (int c = 0; c < 4; ++c) acc[c] = c * 8 < dn ? _mm256_loadu_ps(o + d + 8 * c) : _mm256_setzero_ps();
        for (int i = 0; i < nv; ++i) {
          const __m256 pi = _mm256_set1_ps(p[i]);
          for (int c = 0; c < 4; ++c) {
            if (c * 8 < dn) acc[c] = _mm256_fmadd_ps(pi, _mm256_loadu_ps(v[i] + d + 8 * c), acc[c]);
          }
        }
        for (int c = 0; c < 4; ++c) {
          if (c * 8 < dn) _mm256_storeu_ps(o + d + 8 * c, acc[c]);
        }
      }
    }
  }
}

#endif  // TOKENFAB_ATTENTION_AVX2

}  // namespace

float SoftmaxExp(float x) {
  x = (kExpLo > x) ? kExpLo : x;
  x = (kExpHi < x) ? kExpHi : x;
  const float n = std::nearbyint(x * kLog2e);
  float r = std::fma(n, -kLn2Hi, x);
  r = std::fma(n, -kLn2Lo, r);
  float p = kP5;
  p = std::fma(p, r, kP4);
  p = std::fma(p, r, kP3);
  p = std::fma(p, r, kP2);
  p = std::fma(p, r, kP1);
  p = std::fma(p, r, kP0);
  float y = std::fma(p, r * r, r);
  y = y + 1.0f;
  // 2^n: n in [-127, 127]; n = -127 makes the bit pattern of +0.
  const uint32_t bits = static_cast<uint32_t>(static_cast<int32_t>(n) + 127) << 23;
  float two_n;
  std::memcpy(&two_n, &bits, 4);
  return y * two_n;
}

int64_t AttendGroupScratchFloats(int32_t heads, int32_t n_ctx, const KvLayerView& kv) {
  return heads * Padded(n_ctx) + static_cast<int64_t>(kLanes) * kv.head_dim;
}

void AttendGroupReference(const float* q, int32_t heads, int32_t kv_head, const int32_t* table,
                          int32_t n_ctx, const KvLayerView& kv, float scale, float* out) {
  const int32_t hd = kv.head_dim;
  const DotKernel dot = GetReferenceDotKernel(kv.dtype == KvDType::kF16 ? DType::kF16 : DType::kF32);
  std::vector<float> e(n_ctx);
  for (int32_t h = 0; h < heads; ++h) {
    const float* qh = q + h * hd;
    float m = -std::numeric_limits<float>::infinity();
    for (int32_t j = 0; j < n_ctx; ++j) {
      e[j] = dot(static_cast<const uint8_t*>(KRow(kv, kv.k, table, kv_head, j)),
                 reinterpret_cast<const uint8_t*>(qh), hd) * scale;
      m = std::max(m, e[j]);
    }
    float lanes[kLanes] = {};
    for (int32_t j = 0; j < n_ctx; ++j) {
      e[j] = SoftmaxExp(e[j] - m);
      lanes[j % kLanes] = lanes[j % kLanes] + e[j];
    }
    const float sum = ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) +
                      ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
    const float inv = 1.0f / sum;
    float* o = out + h * hd;
    std::fill(o, o + hd, 0.0f);
    for (int32_t j = 0; j < n_ctx; ++j) {
      const float p = e[j] * inv;
      const void* v = KRow(kv, kv.v, table, kv_head, j);
      for (int32_t d = 0; d < hd; ++d) {
        const float vd = kv.dtype == KvDType::kF16 ? Fp16ToFp32(static_cast<const uint16_t*>(v)[d])
                                                   : static_cast<const float*>(v)[d];
        o[d] = std::fma(p, vd, o[d]);
      }
    }
  }
}

void AttendGroup(const float* q, int32_t heads, int32_t kv_head, const int32_t* table, int32_t n_ctx,
                 const KvLayerView& kv, float scale, float* scratch, float* out) {
#if defined(TOKENFAB_ATTENTION_AVX2)
  if (kv.head_dim == 64) return AttendGroupAvx2<64>(q, heads, kv_head, table, n_ctx, kv, scale, scratch, out);
  if (kv.head_dim % 8 == 0) return AttendGroupAvx2<0>(q, heads, kv_head, table, n_ctx, kv, scale, scratch, out);
#endif
  AttendGroupReference(q, heads, kv_head, table, n_ctx, kv, scale, out);
}

}  // namespace tokenfab
