// Host launchers of the CUDA backend's kernels. Each takes device pointers,
// sizes and a stream; none allocates, synchronizes or checks its arguments
// (the backend validated the batch on the host). The return value is the
// launch's cudaError_t (cudaGetLastError after the launch).
//
// Conventions: activations are row-major [tokens][width]; the residual stream
// is float, everything a GEMM reads or writes is bf16. The KV cache of a
// layer is [block][kv_head][slot][head_dim] bf16 for keys and the same for
// values (blocks of kKvBlock slots), the layout of the CPU cache and of the
// KV transport. A token's cache slot is block * kKvBlock + slot.
//
// Each kernel's reference is the CPU engine's function of the same job
// (worker/kernels/ops.h, attention.h, engine/sampler.h); the tests in
// tests/worker/cuda compare them.
#ifndef TOKENFAB_WORKER_CUDA_KERNELS_H_
#define TOKENFAB_WORKER_CUDA_KERNELS_H_

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

namespace tokenfab::cuda {

using bf16 = __nv_bfloat16;

inline constexpr int32_t kKvBlock = 16;

// x[t][:] = table[tokens[t]][:] as float.
cudaError_t LaunchEmbedding(const int32_t* tokens, int32_t n, const bf16* table, int32_t hidden,
                            float* x, cudaStream_t stream);

// For each row t: x[t] += delta[t] (when delta is not null), then
// out[t] = x[t] / sqrt(mean(x[t]^2) + eps) * weight. The residual add and the
// norm are one pass over x.
cudaError_t LaunchResidualRmsNorm(float* x, const bf16* delta, const float* weight, int32_t n,
                                  int32_t hidden, float eps, bf16* out, cudaStream_t stream);

// out[i] = rmsnorm(x[rows[i]]) * weight for i < n_rows: the final norm of
// the rows whose logits are wanted.
cudaError_t LaunchRmsNormRows(const float* x, const int32_t* rows, int32_t n_rows,
                              const float* weight, int32_t hidden, float eps, bf16* out,
                              cudaStream_t stream);

// The q|k|v rows of the fused projection, in place: adds the biases (when
// `bias`, q_dim + 2 kv_dim floats, is not null), then rotates q and k heads
// by position * inv_freq[i] (head_dim / 2 frequencies, scaling applied).
struct RopeArgs {
  bf16* qkv = nullptr;
  int64_t row_stride = 0;  // elements between tokens' rows
  const float* bias = nullptr;
  const int32_t* positions = nullptr;
  const float* inv_freq = nullptr;
  int32_t n = 0;
  int32_t num_heads = 0;
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;
  bool interleaved = true;  // pairs (2i, 2i+1); else (i, i + head_dim / 2)
};
cudaError_t LaunchRope(const RopeArgs& a, cudaStream_t stream);

// One layer of the paged cache.
struct KvLayer {
  bf16* k = nullptr;
  bf16* v = nullptr;
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;
};

// Stores each token's key and value (at k_offset / v_offset of its qkv row)
// in cache slot slots[t].
cudaError_t LaunchKvWrite(const bf16* qkv, int64_t row_stride, int32_t k_offset, int32_t v_offset,
                          const int32_t* slots, int32_t n, KvLayer kv, cudaStream_t stream);

// Packs (or unpacks) the keys and values of `count` positions whose slots
// are `slots` as [K|V][position][head][dim], the KV transport's wire order.
cudaError_t LaunchKvGather(KvLayer kv, const int32_t* slots, int32_t count, bf16* packed,
                           cudaStream_t stream);
cudaError_t LaunchKvScatter(const bf16* packed, const int32_t* slots, int32_t count, KvLayer kv,
                            cudaStream_t stream);

// out[t] = silu(gate_up[t][0:ff]) * gate_up[t][ff:2ff].
cudaError_t LaunchSiluMul(const bf16* gate_up, int32_t n, int32_t ff, bf16* out,
                          cudaStream_t stream);

// Attention of each token's query heads over its sequence's cache,
// positions 0..positions[t] (the token's own key is already stored).
struct AttentionArgs {
  const bf16* q = nullptr;  // token t's heads at q + t * q_stride
  int64_t q_stride = 0;
  bf16* out = nullptr;  // [n][num_heads * head_dim]
  const bf16* k_cache = nullptr;
  const bf16* v_cache = nullptr;
  int32_t num_heads = 0;
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;
  float scale = 1.0f;
  const int32_t* block_tables = nullptr;  // all sequences' tables, concatenated
  const int32_t* table_offset = nullptr;  // per token: its table's start in block_tables
  const int32_t* positions = nullptr;     // per token
  const int32_t* tokens = nullptr;        // rows of q/out to compute (decode); null: 0..n-1
  int32_t n = 0;
};

// Decode: one token per row, the context split into `num_splits` pieces
// computed in parallel and merged (flash-decoding), so one long sequence
// still fills the GPU. `max_context` bounds every positions[t] + 1; with
// the split count it fixes the grid, so a launch for a given (rows,
// max_context) is capturable in a CUDA graph. DecodeSplits picks a count
// that gives the GPU's `sm_count` multiprocessors two blocks each.
// Scratch: DecodeScratchFloats(n, ...) floats.
// Once per device and model shape, before any launch (and outside graph
// capture): checks the shape (query heads a multiple of KV heads, at most 32
// per group, head_dim <= 256) and lets the kernel use the shared memory it
// needs beyond 48 KB. cudaErrorInvalidValue for a shape it cannot run.
cudaError_t PrepareDecodeAttention(int32_t num_heads, int32_t num_kv_heads, int32_t head_dim);
int32_t DecodeSplits(int32_t n, int32_t num_kv_heads, int32_t max_context, int32_t sm_count);
int64_t DecodeScratchFloats(int32_t n, int32_t num_heads, int32_t head_dim, int32_t num_splits);
cudaError_t LaunchDecodeAttention(const AttentionArgs& a, int32_t max_context, int32_t num_splits,
                                  float* scratch, cudaStream_t stream);

// Prefill: query tiles of up to 64 consecutive tokens of one sequence,
// causal over the cache (cached prefix blocks included), on tensor cores.
// head_dim 64 or 128 where the device has the shared memory (PrefillAttentionSupports
// asks the current device); otherwise the backend runs LaunchDecodeAttention per token.
struct PrefillTile {
  int32_t first_row = 0;  // row of the tile's first token in q / out
  int32_t count = 0;      // 1..64
  int32_t start_pos = 0;  // position of the first token
  int32_t table_offset = 0;
};
bool PrefillAttentionSupports(int32_t head_dim);
cudaError_t LaunchPrefillAttention(const AttentionArgs& a, const PrefillTile* tiles,
                                   int32_t num_tiles, cudaStream_t stream);

// Token choice on the GPU for rows of logits, as engine/sampler.h defines it:
// repetition penalty over prompt and output, presence and frequency over the
// output, greedy below temperature 1e-5, else temperature, top-k, top-p,
// min-p, and a draw from Philox(seed, draw).
struct SamplingRow {
  int32_t logits_row = 0;
  float temperature = 0;
  int32_t top_k = 0;
  float top_p = 1;
  float min_p = 0;
  float repetition_penalty = 1;
  float presence_penalty = 0;
  float frequency_penalty = 0;
  uint64_t seed = 0;
  uint64_t draw = 0;           // how many tokens this request has drawn before
  int32_t history_offset = 0;  // prompt then output tokens in `history`
  int32_t history_len = 0;
  int32_t prompt_len = 0;
};
// `work`: n_rows * vocab floats; `counts`: n_rows * vocab ints, zero on entry
// and left zero.
cudaError_t LaunchSample(const float* logits, int32_t vocab, const SamplingRow* rows,
                         int32_t n_rows, const int32_t* history, float* work, int32_t* counts,
                         int32_t* out_tokens, cudaStream_t stream);

}  // namespace tokenfab::cuda

#endif  // TOKENFAB_WORKER_CUDA_KERNELS_H_
