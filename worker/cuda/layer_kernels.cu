// The per-token kernels of a decoder layer: embedding, residual + RMSNorm,
// rotary embedding, SiLU-and-multiply, and the KV cache's writes and copies.
// All are bandwidth-bound, one pass over their data.
#include <algorithm>

#include "worker/cuda/device_util.cuh"
#include "worker/cuda/kernels.h"

namespace tokenfab::cuda {
namespace {

constexpr int kNormThreads = 256;

__global__ void EmbeddingKernel(const int32_t* tokens, const bf16* table, int32_t hidden,
                                float* x) {
  const int64_t t = blockIdx.x;
  const bf16* row = table + static_cast<int64_t>(tokens[t]) * hidden;
  float* out = x + t * hidden;
  for (int32_t i = threadIdx.x; i < hidden; i += blockDim.x) out[i] = __bfloat162float(row[i]);
}

// One block per row. The sum of squares is a float block reduction.
__global__ void ResidualRmsNormKernel(float* x, const bf16* delta, const float* weight,
                                      int32_t hidden, float eps, bf16* out) {
  __shared__ float shared[32];
  const int64_t t = blockIdx.x;
  float* row = x + t * hidden;
  float sum = 0;
  for (int32_t i = threadIdx.x; i < hidden; i += blockDim.x) {
    float v = row[i];
    if (delta != nullptr) {
      v += __bfloat162float(delta[t * hidden + i]);
      row[i] = v;
    }
    sum += v * v;
  }
  sum = BlockSum(sum, shared);
  const float scale = rsqrtf(sum / static_cast<float>(hidden) + eps);
  for (int32_t i = threadIdx.x; i < hidden; i += blockDim.x) {
    out[t * hidden + i] = __float2bfloat16(row[i] * scale * weight[i]);
  }
}

__global__ void RmsNormRowsKernel(const float* x, const int32_t* rows, const float* weight,
                                  int32_t hidden, float eps, bf16* out) {
  __shared__ float shared[32];
  const float* row = x + static_cast<int64_t>(rows[blockIdx.x]) * hidden;
  float sum = 0;
  for (int32_t i = threadIdx.x; i < hidden; i += blockDim.x) sum += row[i] * row[i];
  sum = BlockSum(sum, shared);
  const float scale = rsqrtf(sum / static_cast<float>(hidden) + eps);
  bf16* o = out + static_cast<int64_t>(blockIdx.x) * hidden;
  for (int32_t i = threadIdx.x; i < hidden; i += blockDim.x) {
    o[i] = __float2bfloat16(row[i] * scale * weight[i]);
  }
}

// One block per token; threads over the row. Pairs of q and k heads rotate
// (after their bias); v only takes its bias.
__global__ void RopeKernel(RopeArgs a) {
  const int64_t t = blockIdx.x;
  bf16* row = a.qkv + t * a.row_stride;
  const int32_t half = a.head_dim / 2;
  const int32_t rot_heads = a.num_heads + a.num_kv_heads;
  const float pos = static_cast<float>(a.positions[t]);
  for (int32_t i = threadIdx.x; i < rot_heads * half; i += blockDim.x) {
    const int32_t h = i / half, j = i % half;
    const int32_t lo = a.interleaved ? 2 * j : j;
    const int32_t hi = a.interleaved ? 2 * j + 1 : j + half;
    const int64_t base = static_cast<int64_t>(h) * a.head_dim;
    float x0 = __bfloat162float(row[base + lo]);
    float x1 = __bfloat162float(row[base + hi]);
    if (a.bias != nullptr) {
      x0 += a.bias[base + lo];
      x1 += a.bias[base + hi];
    }
    float s, c;
    sincosf(pos * a.inv_freq[j], &s, &c);
    row[base + lo] = __float2bfloat16(x0 * c - x1 * s);
    row[base + hi] = __float2bfloat16(x0 * s + x1 * c);
  }
  if (a.bias != nullptr) {
    const int64_t v0 = static_cast<int64_t>(rot_heads) * a.head_dim;
    const int32_t kv_dim = a.num_kv_heads * a.head_dim;
    for (int32_t i = threadIdx.x; i < kv_dim; i += blockDim.x) {
      row[v0 + i] = __float2bfloat16(__bfloat162float(row[v0 + i]) + a.bias[v0 + i]);
    }
  }
}

__device__ __forceinline__ int64_t CacheIndex(const KvLayer& kv, int32_t slot, int32_t head,
                                              int32_t d) {
  const int32_t block = slot / kKvBlock, s = slot % kKvBlock;
  return ((static_cast<int64_t>(block) * kv.num_kv_heads + head) * kKvBlock + s) * kv.head_dim + d;
}

__global__ void KvWriteKernel(const bf16* qkv, int64_t row_stride, int32_t k_offset,
                              int32_t v_offset, const int32_t* slots, KvLayer kv) {
  const int64_t t = blockIdx.x;
  const bf16* row = qkv + t * row_stride;
  const int32_t slot = slots[t];
  const int32_t kv_dim = kv.num_kv_heads * kv.head_dim;
  for (int32_t i = threadIdx.x; i < kv_dim; i += blockDim.x) {
    const int64_t at = CacheIndex(kv, slot, i / kv.head_dim, i % kv.head_dim);
    kv.k[at] = row[k_offset + i];
    kv.v[at] = row[v_offset + i];
  }
}

// One block per position; packed is [K|V][position][head][dim].
template <bool kGather>
__global__ void KvCopyKernel(KvLayer kv, const int32_t* slots, int32_t count, bf16* packed) {
  const int64_t p = blockIdx.x;
  const int32_t kv_dim = kv.num_kv_heads * kv.head_dim;
  const int32_t slot = slots[p];
  bf16* pk = packed + p * kv_dim;
  bf16* pv = packed + (static_cast<int64_t>(count) + p) * kv_dim;
  for (int32_t i = threadIdx.x; i < kv_dim; i += blockDim.x) {
    const int64_t at = CacheIndex(kv, slot, i / kv.head_dim, i % kv.head_dim);
    if (kGather) {
      pk[i] = kv.k[at];
      pv[i] = kv.v[at];
    } else {
      kv.k[at] = pk[i];
      kv.v[at] = pv[i];
    }
  }
}

// Grid (column blocks, rows); rows beyond 65535 (grid y's limit) in
// further launches.
__global__ void SiluMulKernel(const bf16* gate_up, int32_t ff, bf16* out) {
  const int64_t t = blockIdx.y;
  const bf16* g = gate_up + t * 2 * ff;
  const bf16* u = g + ff;
  bf16* o = out + t * ff;
  for (int32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < ff; i += gridDim.x * blockDim.x) {
    const float x = __bfloat162float(g[i]);
    o[i] = __float2bfloat16(x / (1.0f + __expf(-x)) * __bfloat162float(u[i]));
  }
}

int ThreadsFor(int64_t width) {
  if (width >= 1024) return 256;
  if (width >= 256) return 128;
  return 64;
}

}  // namespace

cudaError_t LaunchEmbedding(const int32_t* tokens, int32_t n, const bf16* table, int32_t hidden,
                            float* x, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  EmbeddingKernel<<<n, ThreadsFor(hidden), 0, stream>>>(tokens, table, hidden, x);
  return cudaGetLastError();
}

cudaError_t LaunchResidualRmsNorm(float* x, const bf16* delta, const float* weight, int32_t n,
                                  int32_t hidden, float eps, bf16* out, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  ResidualRmsNormKernel<<<n, kNormThreads, 0, stream>>>(x, delta, weight, hidden, eps, out);
  return cudaGetLastError();
}

cudaError_t LaunchRmsNormRows(const float* x, const int32_t* rows, int32_t n_rows,
                              const float* weight, int32_t hidden, float eps, bf16* out,
                              cudaStream_t stream) {
  if (n_rows == 0) return cudaSuccess;
  RmsNormRowsKernel<<<n_rows, kNormThreads, 0, stream>>>(x, rows, weight, hidden, eps, out);
  return cudaGetLastError();
}

cudaError_t LaunchRope(const RopeArgs& a, cudaStream_t stream) {
  if (a.n == 0) return cudaSuccess;
  RopeKernel<<<a.n, ThreadsFor((a.num_heads + a.num_kv_heads) * a.head_dim / 2), 0, stream>>>(a);
  return cudaGetLastError();
}

cudaError_t LaunchKvWrite(const bf16* qkv, int64_t row_stride, int32_t k_offset, int32_t v_offset,
                          const int32_t* slots, int32_t n, KvLayer kv, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  KvWriteKernel<<<n, ThreadsFor(kv.num_kv_heads * kv.head_dim), 0, stream>>>(
      qkv, row_stride, k_offset, v_offset, slots, kv);
  return cudaGetLastError();
}

cudaError_t LaunchKvGather(KvLayer kv, const int32_t* slots, int32_t count, bf16* packed,
                           cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  KvCopyKernel<true>
      <<<count, ThreadsFor(kv.num_kv_heads * kv.head_dim), 0, stream>>>(kv, slots, count, packed);
  return cudaGetLastError();
}

cudaError_t LaunchKvScatter(const bf16* packed, const int32_t* slots, int32_t count, KvLayer kv,
                            cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  KvCopyKernel<false><<<count, ThreadsFor(kv.num_kv_heads * kv.head_dim), 0, stream>>>(
      kv, slots, count, const_cast<bf16*>(packed));
  return cudaGetLastError();
}

cudaError_t LaunchSiluMul(const bf16* gate_up, int32_t n, int32_t ff, bf16* out,
                          cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  const int threads = 256;
  constexpr int32_t kMaxRows = 65535;
  for (int32_t t0 = 0; t0 < n; t0 += kMaxRows) {
    const dim3 grid((ff + threads - 1) / threads, std::min(kMaxRows, n - t0));
    SiluMulKernel<<<grid, threads, 0, stream>>>(gate_up + static_cast<int64_t>(t0) * 2 * ff, ff,
                                                out + static_cast<int64_t>(t0) * ff);
    if (const cudaError_t e = cudaGetLastError(); e != cudaSuccess) return e;
  }
  return cudaSuccess;
}

}  // namespace tokenfab::cuda
