#include "worker/kernels/matmul.h"

#include <algorithm>
#include <cstring>

#include "common/half.h"
#include "worker/kernels/cpu_features.h"
#include "worker/kernels/gemm_internal.h"
#include "worker/kernels/vec_dot.h"

namespace tokenfab {
namespace kernels_internal {

GemmKernel GemmFor(DType type, GemmIsa isa) {
  if ((isa == GemmIsa::kBest || isa == GemmIsa::kAvxVnni) && CpuHasAvxVnni()) {
    if (GemmKernel k = VnniGemm(type); k.run || isa == GemmIsa::kAvxVnni) return k;
  }
  if ((isa == GemmIsa::kBest || isa == GemmIsa::kAvx2) && CpuHasAvx2()) return Avx2Gemm(type);
  return {};
}

int WeightOffset(DType type) {
  switch (type) {
    case DType::kQ4_0: return 8;
    case DType::kQ5_0: return 16;
    case DType::kQ8_0: return 128;
    default: return 0;
  }
}

}  // namespace kernels_internal

namespace {

using kernels_internal::GemmActs;
using kernels_internal::GemmKernel;
using kernels_internal::GroupBlock32;
using kernels_internal::kGroupTokens;

// Rows per work item: a multiple of every kernel's row tile (8), small enough
// that a decode matmul of a few hundred rows still splits across threads.
constexpr int64_t kRowsPerTask = 16;
// The per-element fallback (no SIMD kernel for this CPU or type).
constexpr int64_t kTokensPerTile = 32;

// Interleaves tokens [8g, 8g + 8) of the quantized rows into group g's
// blocks; tokens past n are zero.
void PackGroup32(const uint8_t* rows, int64_t row_bytes, int64_t n, int64_t g, int64_t nb,
                 ActFormat format, int offset, GroupBlock32* out) {
  std::memset(out, 0, sizeof(GroupBlock32) * nb);
  for (int t = 0; t < kGroupTokens; ++t) {
    const int64_t tok = g * kGroupTokens + t;
    if (tok >= n) break;
    const uint8_t* row = rows + tok * row_bytes;
    for (int64_t b = 0; b < nb; ++b) {
      const int8_t* qs;
      uint16_t d16, s16 = 0;
      if (format == ActFormat::kQ8_0) {
        const auto& x = reinterpret_cast<const BlockQ8_0*>(row)[b];
        qs = x.qs;
        d16 = x.d;
      } else {
        const auto& x = reinterpret_cast<const BlockQ8_1*>(row)[b];
        qs = x.qs;
        d16 = x.d;
        s16 = x.s;
      }
      GroupBlock32& o = out[b];
      int sum = 0;
      for (int k = 0; k < kQBlock / 4; ++k) std::memcpy(o.qs[k][t], qs + 4 * k, 4);
      for (int j = 0; j < kQBlock; ++j) sum += qs[j];
      o.d[t] = Fp16ToFp32(d16);
      o.s[t] = format == ActFormat::kQ8_1 ? Fp16ToFp32(s16) : 0.0f;
      o.bias[t] = -offset * sum;
    }
  }
}

// The activations as `kernel` reads them: float rows in place, or quantized
// rows (the reference's format) plus, for the tokens kernels, groups of 8
// interleaved, made in one parallel pass over chunks of 8 tokens.
GemmActs PrepareActs(const GemmKernel& kernel, DType type, int64_t cols, const float* x,
                     int64_t x_stride, int64_t n_tokens, ThreadPool& pool,
                     std::vector<uint8_t>* scratch) {
  const ActFormat format = ActivationFormatFor(type);
  GemmActs acts;
  acts.n_tokens = n_tokens;
  acts.cols = cols;
  if (format == ActFormat::kF32) {
    acts.rows = reinterpret_cast<const uint8_t*>(x);
    acts.row_bytes = x_stride * static_cast<int64_t>(sizeof(float));
    return acts;
  }
  const int64_t row_bytes = ActivationRowBytes(format, cols);
  const int64_t n_groups = kernel.uses_groups ? kernels_internal::GroupsFor(n_tokens) : 0;
  const int64_t nb = cols / kQBlock;
  const int64_t rows_size = (row_bytes * n_tokens + 63) / 64 * 64;
  const int64_t need = rows_size + n_groups * nb * static_cast<int64_t>(sizeof(GroupBlock32));
  if (static_cast<int64_t>(scratch->size()) < need) scratch->resize(need);
  uint8_t* q = scratch->data();
  auto* groups = reinterpret_cast<GroupBlock32*>(q + rows_size);
  const int offset = kernels_internal::WeightOffset(type);
  const int64_t chunks = (n_tokens + kGroupTokens - 1) / kGroupTokens;
  pool.ParallelFor(chunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t t1 = std::min(n_tokens, (c + 1) * kGroupTokens);
      for (int64_t t = c * kGroupTokens; t < t1; ++t) {
        QuantizeActivations(format, x + t * x_stride, cols, q + t * row_bytes);
      }
      if (c < n_groups) PackGroup32(q, row_bytes, n_tokens, c, nb, format, offset, groups + c * nb);
    }
  });
  acts.rows = q;
  acts.row_bytes = row_bytes;
  acts.groups = groups;
  acts.n_groups = n_groups;
  return acts;
}

// Runs `kernel` (or the dot fallback) for every output's rows in one
// parallel region: work items of kRowsPerTask rows, never straddling two
// matrices.
void RunShared(const GemmKernel& kernel, std::span<const MatMulOutput> outs, const GemmActs& acts,
               ThreadPool& pool) {
  int64_t tasks = 0;
  int64_t first_task[8];
  for (size_t i = 0; i < outs.size(); ++i) {
    first_task[i] = tasks;
    tasks += (outs[i].w->rows + kRowsPerTask - 1) / kRowsPerTask;
  }
  const DotKernel dot = kernel.run == nullptr ? GetDotKernel(outs[0].w->type) : nullptr;
  pool.ParallelFor(tasks, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      size_t i = outs.size() - 1;
      while (first_task[i] > t) --i;
      const MatMulOutput& o = outs[i];
      const int64_t r0 = (t - first_task[i]) * kRowsPerTask;
      const int64_t r1 = std::min(o.w->rows, r0 + kRowsPerTask);
      if (kernel.run != nullptr) {
        kernel.run(*o.w, r0, r1, acts, o.y, o.y_stride);
        continue;
      }
      for (int64_t k0 = 0; k0 < acts.n_tokens; k0 += kTokensPerTile) {
        const int64_t k1 = std::min(acts.n_tokens, k0 + kTokensPerTile);
        for (int64_t r = r0; r < r1; ++r) {
          for (int64_t k = k0; k < k1; ++k) {
            o.y[k * o.y_stride + r] = dot(o.w->row(r), acts.rows + k * acts.row_bytes, o.w->cols);
          }
        }
      }
    }
  });
}

}  // namespace

void kernels_internal::MatMulWith(const GemmKernel& kernel, const WeightMatrix& w, const float* x,
                                  int64_t x_stride, int64_t n_tokens, float* y, int64_t y_stride,
                                  ThreadPool& pool, std::vector<uint8_t>* scratch) {
  if (n_tokens <= 0) return;
  const GemmActs acts = PrepareActs(kernel, w.type, w.cols, x, x_stride, n_tokens, pool, scratch);
  const MatMulOutput out{&w, y, y_stride};
  RunShared(kernel, {&out, 1}, acts, pool);
}

void MatMul(const WeightMatrix& w, const float* x, int64_t x_stride, int64_t n_tokens, float* y,
            int64_t y_stride, ThreadPool& pool, std::vector<uint8_t>* scratch) {
  kernels_internal::MatMulWith(kernels_internal::GemmFor(w.type), w, x, x_stride, n_tokens, y,
                               y_stride, pool, scratch);
}

void MatMulShared(std::span<const MatMulOutput> outs, const float* x, int64_t x_stride,
                  int64_t n_tokens, ThreadPool& pool, std::vector<uint8_t>* scratch) {
  if (n_tokens <= 0 || outs.empty()) return;
  const bool same = outs.size() <= 8 && std::all_of(outs.begin(), outs.end(), [&](const auto& o) {
    return o.w->type == outs[0].w->type && o.w->cols == outs[0].w->cols;
  });
  if (!same) {  // mixed types quantize differently: one at a time
    for (const MatMulOutput& o : outs) MatMul(*o.w, x, x_stride, n_tokens, o.y, o.y_stride, pool, scratch);
    return;
  }
  const GemmKernel kernel = kernels_internal::GemmFor(outs[0].w->type);
  const GemmActs acts =
      PrepareActs(kernel, outs[0].w->type, outs[0].w->cols, x, x_stride, n_tokens, pool, scratch);
  RunShared(kernel, outs, acts, pool);
}

}  // namespace tokenfab
