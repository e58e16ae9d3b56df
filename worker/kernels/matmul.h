// Y = X W^T for a stored weight matrix W and a batch of float activation rows:
// the engine's projections. Rows of W are split across threads; each output
// element is one whole dot product computed by one thread, so results do not
// depend on the thread count or on which tokens share the batch.
#ifndef TOKENFAB_WORKER_KERNELS_MATMUL_H_
#define TOKENFAB_WORKER_KERNELS_MATMUL_H_

#include <cstdint>
#include <span>
#include <vector>

#include "common/thread_pool.h"
#include "worker/model/model_weights.h"

namespace tokenfab {

// y[t * y_stride + r] = dot(w.row(r), x[t * x_stride ...]) for every token t
// < n_tokens and row r < w.rows. `scratch` holds quantized activations between
// calls (grown as needed); the caller owns it and uses it from one thread.
void MatMul(const WeightMatrix& w, const float* x, int64_t x_stride, int64_t n_tokens, float* y,
            int64_t y_stride, ThreadPool& pool, std::vector<uint8_t>* scratch);

// Several matrices applied to the same activations (q, k and v; gate and
// up): the activations are quantized once and all the matrices' rows are
// split across threads in one parallel region, so a decode step opens one
// fork-join where it opened three. Every output is what MatMul computes.
struct MatMulOutput {
  const WeightMatrix* w;
  float* y;
  int64_t y_stride;
};
void MatMulShared(std::span<const MatMulOutput> outs, const float* x, int64_t x_stride,
                  int64_t n_tokens, ThreadPool& pool, std::vector<uint8_t>* scratch);

}  // namespace tokenfab

#endif  // TOKENFAB_WORKER_KERNELS_MATMUL_H_
