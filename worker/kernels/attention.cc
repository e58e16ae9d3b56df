#include "worker/kernels/attention.h"

#include <cmath>
#include <cstring>
#include <limits>

#include "common/half.h"
#include "worker/kernels/vec_dot.h"

#if defined(__AVX2__) && defined(__F16C__)
#include <immintrin.h>
#endif

namespace tokenfab {
namespace {

// out[d] = out[d] + p * v[d], as a separate multiply and add (no fused
// multiply-add), so the SIMD and scalar paths round identically.
void AccumulateF16(float* out, float p, const uint16_t* v, int32_t n) {
  int32_t d = 0;
#if defined(__AVX2__) && defined(__F16C__)
  const __m256 pv = _mm256_set1_ps(p);
  for (; d + 8 <= n; d += 8) {
    const __m256 vv = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(v + d)));
    _mm256_storeu_ps(out + d, _mm256_add_ps(_mm256_loadu_ps(out + d), _mm256_mul_ps(pv, vv)));
  }
#endif
  for (; d < n; ++d) out[d] = out[d] + p * Fp16ToFp32(v[d]);
}

void AccumulateF32(float* out, float p, const float* v, int32_t n) {
  int32_t d = 0;
#if defined(__AVX2__)
  const __m256 pv = _mm256_set1_ps(p);
  for (; d + 8 <= n; d += 8) {
    _mm256_storeu_ps(out + d, _mm256_add_ps(_mm256_loadu_ps(out + d),
                                            _mm256_mul_ps(pv, _mm256_loadu_ps(v + d))));
  }
#endif
  for (; d < n; ++d) out[d] = out[d] + p * v[d];
}

}  // namespace

void AttendHead(const float* q, int32_t kv_head, const int32_t* block_table, int32_t n_ctx,
                const KvLayerView& kv, float scale, float* scores, float* out) {
  const int32_t hd = kv.head_dim;
  float max_score = -std::numeric_limits<float>::infinity();
  for (int32_t j = 0; j < n_ctx; ++j) {
    const int64_t off = kv.Offset(block_table[j / kv.block_size], kv_head, j % kv.block_size);
    const float dot = kv.dtype == KvDType::kF16
                          ? DotF32F16(q, static_cast<const uint16_t*>(kv.k) + off, hd)
                          : DotF32(q, static_cast<const float*>(kv.k) + off, hd);
    scores[j] = dot * scale;
    max_score = std::max(max_score, scores[j]);
  }
  float sum = 0;
  for (int32_t j = 0; j < n_ctx; ++j) {
    scores[j] = std::exp(scores[j] - max_score);
    sum += scores[j];
  }
  const float inv_sum = 1.0f / sum;
  std::memset(out, 0, sizeof(float) * hd);
  for (int32_t j = 0; j < n_ctx; ++j) {
    const float p = scores[j] * inv_sum;
    const int64_t off = kv.Offset(block_table[j / kv.block_size], kv_head, j % kv.block_size);
    if (kv.dtype == KvDType::kF16) {
      AccumulateF16(out, p, static_cast<const uint16_t*>(kv.v) + off, hd);
    } else {
      AccumulateF32(out, p, static_cast<const float*>(kv.v) + off, hd);
    }
  }
}

}  // namespace tokenfab
