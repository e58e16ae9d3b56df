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

// One dot kernel call per output: for CPUs or types without a GEMM kernel.
void MatMulByDots(const WeightMatrix& w, const uint8_t* act, int64_t act_stride, int64_t n_tokens,
                  float* y, int64_t y_stride, ThreadPool& pool) {
  const DotKernel dot = GetDotKernel(w.type);
  pool.ParallelFor(w.rows, kRowsPerTask, [&](int64_t r0, int64_t r1) {
    for (int64_t t0 = 0; t0 < n_tokens; t0 += kTokensPerTile) {
      const int64_t t1 = std::min(n_tokens, t0 + kTokensPerTile);
      for (int64_t r = r0; r < r1; ++r) {
        const uint8_t* row = w.row(r);
        for (int64_t t = t0; t < t1; ++t) y[t * y_stride + r] = dot(row, act + t * act_stride, w.cols);
      }
    }
  });
}

}  // namespace

void kernels_internal::MatMulWith(const GemmKernel& kernel, const WeightMatrix& w, const float* x,
                                  int64_t x_stride, int64_t n_tokens, float* y, int64_t y_stride,
                                  ThreadPool& pool, std::vector<uint8_t>* scratch) {
  if (n_tokens <= 0) return;
  const ActFormat format = ActivationFormatFor(w.type);
  const int64_t cols = w.cols;

  GemmActs acts;
  acts.n_tokens = n_tokens;
  acts.cols = cols;
  if (format == ActFormat::kF32) {
    // Float rows are used in place.
    acts.rows = reinterpret_cast<const uint8_t*>(x);
    acts.row_bytes = x_stride * static_cast<int64_t>(sizeof(float));
  } else {
    // Quantized rows (the reference's format), then groups of 8 interleaved
    // for the tokens kernels, in one parallel pass over chunks of 8 tokens.
    const int64_t row_bytes = ActivationRowBytes(format, cols);
    const int64_t n_groups = kernel.uses_groups ? kernels_internal::GroupsFor(n_tokens) : 0;
    const int64_t nb = cols / kQBlock;
    const int64_t rows_size = (row_bytes * n_tokens + 63) / 64 * 64;
    const int64_t need = rows_size + n_groups * nb * static_cast<int64_t>(sizeof(GroupBlock32));
    if (static_cast<int64_t>(scratch->size()) < need) scratch->resize(need);
    uint8_t* q = scratch->data();
    auto* groups = reinterpret_cast<GroupBlock32*>(q + rows_size);
    const int offset = kernels_internal::WeightOffset(w.type);
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
  }

  if (kernel.run == nullptr) {
    MatMulByDots(w, acts.rows, acts.row_bytes, n_tokens, y, y_stride, pool);
    return;
  }
  pool.ParallelFor(w.rows, kRowsPerTask, [&](int64_t r0, int64_t r1) {
    kernel.run(w, r0, r1, acts, y, y_stride);
  });
}

void MatMul(const WeightMatrix& w, const float* x, int64_t x_stride, int64_t n_tokens, float* y,
            int64_t y_stride, ThreadPool& pool, std::vector<uint8_t>* scratch) {
  kernels_internal::MatMulWith(kernels_internal::GemmFor(w.type), w, x, x_stride, n_tokens, y,
                               y_stride, pool, scratch);
}

}  // namespace tokenfab
