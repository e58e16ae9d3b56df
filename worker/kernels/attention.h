// Attention of one query head over a sequence's paged KV cache.
//
// The cache of a layer is an array of blocks; block b holds, per KV head, a
// `block_size` x `head_dim` slab of keys (and one of values), so one head's
// keys within a block are contiguous. A sequence's block table maps its
// position p to block table[p / block_size], slot p % block_size.
//
// The softmax and the weighted sum over V run over positions 0..n_ctx-1 in
// order, whatever the batch or chunking, so a token attends bit-identically
// whether it was prefilled with others or decoded alone.
#ifndef TOKENFAB_WORKER_KERNELS_ATTENTION_H_
#define TOKENFAB_WORKER_KERNELS_ATTENTION_H_

#include <cstdint>

namespace tokenfab {

enum class KvDType { kF16, kF32 };

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

// out[head_dim] = sum_j softmax_j(scale * q . K_j) V_j over j < n_ctx.
// `scores` is caller scratch of n_ctx floats.
void AttendHead(const float* q, int32_t kv_head, const int32_t* block_table, int32_t n_ctx,
                const KvLayerView& kv, float scale, float* scores, float* out);

}  // namespace tokenfab

#endif  // TOKENFAB_WORKER_KERNELS_ATTENTION_H_
