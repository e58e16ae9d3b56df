#include "worker/kernels/ops.h"

#include <cmath>

namespace tokenfab {

void RmsNorm(const float* x, const float* weight, int64_t n, float eps, float* out) {
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(x[i]) * x[i];
  const float mean = static_cast<float>(sum / static_cast<double>(n));
  const float scale = 1.0f / std::sqrt(mean + eps);
  for (int64_t i = 0; i < n; ++i) out[i] = (x[i] * scale) * weight[i];
}

void RopeAngles(int32_t pos, const float* inv_freq, int32_t half_dim, float* cos_out,
                float* sin_out) {
  const float p = static_cast<float>(pos);
  for (int32_t i = 0; i < half_dim; ++i) {
    const float theta = p * inv_freq[i];
    cos_out[i] = std::cos(theta);
    sin_out[i] = std::sin(theta);
  }
}

void ApplyRope(float* x, int32_t n_heads, int32_t head_dim, const float* cos_v, const float* sin_v,
               RopeStyle style) {
  const int32_t half = head_dim / 2;
  for (int32_t h = 0; h < n_heads; ++h) {
    float* v = x + static_cast<int64_t>(h) * head_dim;
    for (int32_t i = 0; i < half; ++i) {
      // Interleaved pairs (2i, 2i+1); halves pair (i, i + d/2).
      const int32_t a = style == RopeStyle::kInterleaved ? 2 * i : i;
      const int32_t b = style == RopeStyle::kInterleaved ? 2 * i + 1 : i + half;
      const float x0 = v[a], x1 = v[b];
      v[a] = x0 * cos_v[i] - x1 * sin_v[i];
      v[b] = x0 * sin_v[i] + x1 * cos_v[i];
    }
  }
}

void SiluMul(const float* gate, const float* up, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    out[i] = (g / (1.0f + std::exp(-g))) * up[i];
  }
}

void AddInPlace(float* x, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

}  // namespace tokenfab
