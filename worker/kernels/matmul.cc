#include "worker/kernels/matmul.h"

#include <algorithm>

#include "worker/kernels/vec_dot.h"

namespace tokenfab {
namespace {

// Rows per work item and tokens per tile: a tile's activations and a work
// item's weight rows stay in L1/L2 while every pair is visited.
constexpr int64_t kRowsPerTask = 16;
constexpr int64_t kTokensPerTile = 32;

}  // namespace

void MatMul(const WeightMatrix& w, const float* x, int64_t x_stride, int64_t n_tokens, float* y,
            int64_t y_stride, ThreadPool& pool, std::vector<uint8_t>* scratch) {
  if (n_tokens <= 0) return;
  const ActFormat format = ActivationFormatFor(w.type);
  const DotKernel dot = GetDotKernel(w.type);
  const int64_t cols = w.cols;

  // Activation rows in the kernel's format; float rows are used in place.
  const uint8_t* act = reinterpret_cast<const uint8_t*>(x);
  int64_t act_stride = x_stride * static_cast<int64_t>(sizeof(float));
  if (format != ActFormat::kF32) {
    act_stride = ActivationRowBytes(format, cols);
    const size_t need = static_cast<size_t>(act_stride * n_tokens);
    if (scratch->size() < need) scratch->resize(need);
    uint8_t* q = scratch->data();
    pool.ParallelFor(n_tokens, 8, [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t) {
        QuantizeActivations(format, x + t * x_stride, cols, q + t * act_stride);
      }
    });
    act = q;
  }

  pool.ParallelFor(w.rows, kRowsPerTask, [&](int64_t r0, int64_t r1) {
    for (int64_t t0 = 0; t0 < n_tokens; t0 += kTokensPerTile) {
      const int64_t t1 = std::min(n_tokens, t0 + kTokensPerTile);
      for (int64_t r = r0; r < r1; ++r) {
        const uint8_t* row = w.row(r);
        for (int64_t t = t0; t < t1; ++t) {
          y[t * y_stride + r] = dot(row, act + t * act_stride, cols);
        }
      }
    }
  });
}

}  // namespace tokenfab
