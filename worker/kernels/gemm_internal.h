// Tiled matmul kernels (many weight rows x many tokens per call) shared by
// matmul.cc (dispatch, activation packing) and the per-ISA kernel files
// gemm_avx2.cc, gemm_vnni.cc. Not for use outside worker/kernels.
//
// Exactness contract: every output y[t][r] goes through exactly the operations
// of the scalar reference dot (vec_dot_reference.cc) for (row r, token t): the
// integer part of each block is exact, so its lanes may be summed in any
// order; the float operations on it (scale products, the running sum over
// blocks) are the reference's, in its order, applied lane-wise to vectors
// whose lanes are independent outputs. Lanes never mix, so a result does not
// depend on which tile, lane, thread or batch it was computed in.
#ifndef TOKENFAB_WORKER_KERNELS_GEMM_INTERNAL_H_
#define TOKENFAB_WORKER_KERNELS_GEMM_INTERNAL_H_

#include <cstdint>
#include <vector>

#include "common/thread_pool.h"
#include "worker/kernels/quant_blocks.h"
#include "worker/model/model_weights.h"

namespace tokenfab::kernels_internal {

// Tokens per group: one per 32-bit lane of a 256-bit vector.
inline constexpr int kGroupTokens = 8;

// Eight tokens' activations for one 32-element block, interleaved so that a
// vector load of qs + 32 * k holds elements 4k..4k+3 of each token in its own
// 32-bit lane (the layout the "tokens" kernels broadcast weights against).
// Padding tokens (past the batch) are all zero.
struct GroupBlock32 {
  int8_t qs[kQBlock / 4][kGroupTokens][4];
  float d[kGroupTokens];        // the scale as the reference reads it (fp16 -> f32)
  float s[kGroupTokens];        // Q8_1: the stored d * sum(qs), as read; else 0
  int32_t bias[kGroupTokens];   // -offset * sum(qs), offset of the weight type's unsigned storage
};

// The same for a 256-element K block (Q8_K).
struct GroupBlockK {
  int8_t qs[kKBlock / 4][kGroupTokens][4];
  float d[kGroupTokens];
  // Sums of qs per 16 elements, two neighbours per 32-bit lane: [j][t][0..1]
  // = bsums[2j], bsums[2j + 1] of token t (for pmaddwd against two scales).
  int16_t bsums[kKBlock / 32][kGroupTokens][2];
};

// Activations of one matmul as the kernels read them.
struct GemmActs {
  int64_t n_tokens = 0;
  int64_t cols = 0;
  // Per-token rows: the reference's activation format (BlockQ8_0 / Q8_1 / Q8_K
  // rows of row_bytes) for quantized weights, float rows for float weights.
  const uint8_t* rows = nullptr;
  int64_t row_bytes = 0;
  // Tokens [0, 8 * n_groups) interleaved in groups (the last may be padded):
  // GroupBlock32 or GroupBlockK, group-major, cols / block elements per group.
  const void* groups = nullptr;
  int64_t n_groups = 0;
};

// y[t * y_stride + r] for rows [r0, r1) and every token of `acts`.
using GemmFn = void (*)(const WeightMatrix& w, int64_t r0, int64_t r1, const GemmActs& acts,
                        float* y, int64_t y_stride);

struct GemmKernel {
  GemmFn run = nullptr;
  // Whether tokens in groups are read from acts.groups (packed by the caller).
  bool uses_groups = false;
};

// How many groups of 8 the caller packs for `n` tokens: full groups, plus a
// padded one when enough tokens remain for the tokens kernel to beat the rows
// kernel on them. Depends only on n (speed, not results: both kernels give
// the same bits).
inline int64_t GroupsFor(int64_t n) { return n / kGroupTokens + (n % kGroupTokens >= 4 ? 1 : 0); }

// Offset added to a weight type's values to store them unsigned in the int8
// kernels (Q4_0: 8, Q5_0: 16, Q8_0: 128); the activation bias removes it.
int WeightOffset(DType type);

// Kernels per instruction set; run == nullptr where the set has none for the type.
GemmKernel Avx2Gemm(DType type);
GemmKernel VnniGemm(DType type);

enum class GemmIsa { kBest, kAvx2, kAvxVnni };
// The kernel of `isa` for `type` where this CPU can run it, else run == nullptr
// (kBest: the fastest this CPU runs).
GemmKernel GemmFor(DType type, GemmIsa isa = GemmIsa::kBest);

// MatMul (matmul.h) with a given kernel; run == nullptr takes the per-element
// dot path. Tests use it to check every instruction set's kernels.
void MatMulWith(const GemmKernel& kernel, const WeightMatrix& w, const float* x, int64_t x_stride,
                int64_t n_tokens, float* y, int64_t y_stride, ThreadPool& pool,
                std::vector<uint8_t>* scratch);

}  // namespace tokenfab::kernels_internal

#endif  // TOKENFAB_WORKER_KERNELS_GEMM_INTERNAL_H_
