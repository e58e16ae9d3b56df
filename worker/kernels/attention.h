// Attention of a token's query heads over a sequence's paged KV cache.
//
// The cache of a layer is an array of blocks; block b holds, per KV head, a
// `block_size` x `head_dim` slab of keys (and one of values), so one head's
// keys within a block are contiguous. A sequence's block table maps its
// position p to block table[p / block_size], slot p % block_size.
//
// Each query head's result is defined by AttendGroupReference, whose every
// reduction runs in a fixed order over positions 0..n_ctx-1 (see attention.cc),
// whatever the batch, the chunking or the other heads in the call; so a
// token attends bit-identically whether it was prefilled with others or
// decoded alone. AttendGroup computes the same bits with SIMD, letting the
// query heads of a GQA group share each converted K and V row.
#ifndef TOKENFAB_WORKER_KERNELS_ATTENTION_H_
#define TOKENFAB_WORKER_KERNELS_ATTENTION_H_

#include <cstdint>

namespace tokenfab {

// kBF16 is the CUDA backend's cache type; the CPU cache holds f16 or f32.
enum class KvDType { kF16, kF32, kBF16 };

struct KvLayerView {
  KvDType dtype = KvDType::kF16;
  const void* k = nullptr;
  const void* v = nullptr;
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;
  int32_t block_size = 0;

  int64_t Offset(int32_t block, int32_t head, int32_t slot) const {
    return ((static_cast<int64_t>(block) * num_kv_heads + head) * block_size + slot) * head_dim;
  }
};

// Floats of caller scratch AttendGroup needs.
int64_t AttendGroupScratchFloats(int32_t heads, int32_t n_ctx, const KvLayerView& kv);

// For each of `heads` query heads h (q + h * head_dim, all attending to KV
// head `kv_head`): out[h * head_dim + d] = sum_j softmax_j(scale * q_h . K_j) V_j[d]
// over j < n_ctx.
void AttendGroup(const float* q, int32_t heads, int32_t kv_head, const int32_t* block_table,
                 int32_t n_ctx, const KvLayerView& kv, float scale, float* scratch, float* out);

// The scalar definition of AttendGroup's results, per head:
//   s_j = DotF32F16(q, K_j) * scale (the float dot of vec_dot.h), m = max s_j,
//   e_j = SoftmaxExp(s_j - m), sum = 8 lanes (lane j % 8, in j order) added
//   as ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7)),
//   out = fma(e_j * (1 / sum), V_j, out) for j in order, from 0.
void AttendGroupReference(const float* q, int32_t heads, int32_t kv_head, const int32_t* block_table,
                          int32_t n_ctx, const KvLayerView& kv, float scale, float* out);

// exp(x) to about 2 ulp for x in [-88, 88] (clamped there), by a fixed
// sequence of float operations that the SIMD version repeats lane by lane.
float SoftmaxExp(float x);

}  // namespace tokenfab

#endif  // TOKENFAB_WORKER_KERNELS_ATTENTION_H_
