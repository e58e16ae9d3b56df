// Element-wise and per-token operations of the decoder layer. Each works on
// one token's vector in a fixed order, so results are independent of batching.
#ifndef TOKENFAB_WORKER_KERNELS_OPS_H_
#define TOKENFAB_WORKER_KERNELS_OPS_H_

#include <cstdint>

#include "worker/model/model_config.h"

namespace tokenfab {

// out = x / sqrt(mean(x^2) + eps) * weight. The sum of squares is taken in
// double, in index order.
void RmsNorm(const float* x, const float* weight, int64_t n, float eps, float* out);

// cos/sin of position `pos` times each inverse frequency (head_dim / 2 each).
void RopeAngles(int32_t pos, const float* inv_freq, int32_t half_dim, float* cos_out,
                float* sin_out);
// Rotates `n_heads` consecutive heads of `head_dim` in place.
void ApplyRope(float* x, int32_t n_heads, int32_t head_dim, const float* cos_v, const float* sin_v,
               RopeStyle style);

// out[i] = silu(gate[i]) * up[i], silu(g) = g / (1 + exp(-g)).
void SiluMul(const float* gate, const float* up, int64_t n, float* out);

// x[i] += y[i]
void AddInPlace(float* x, const float* y, int64_t n);

}  // namespace tokenfab

#endif  // TOKENFAB_WORKER_KERNELS_OPS_H_
