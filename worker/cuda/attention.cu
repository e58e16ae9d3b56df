// Paged attention. Decode splits each sequence's context into pieces that
// run in parallel and merges their partial softmaxes (flash-decoding).
// Prefill runs query tiles of 64 tokens against key/value tiles of 64
// positions on tensor cores (bf16 in, float accumulate) with an online
// softmax, reading every key through the block table, so cached prefix
// blocks and the chunk's own keys are one loop.
#include <mma.h>

#include <algorithm>

#include "worker/cuda/device_util.cuh"
#include "worker/cuda/kernels.h"

namespace tokenfab::cuda {
namespace {

constexpr int kDecodeThreads = 128;
constexpr int kMaxHeadDimDecode = 256;

__device__ __forceinline__ int64_t CacheRow(const int32_t* table, int32_t pos, int32_t num_kv_heads,
                                            int32_t kv_head, int32_t head_dim) {
  const int64_t block = table[pos / kKvBlock];
  return ((block * num_kv_heads + kv_head) * kKvBlock + pos % kKvBlock) * head_dim;
}

// Grid (rows, kv heads, splits). Each block computes, for the query heads
// sharing one KV head, softmax-weighted values over one split of the
// context, in chunks of kChunk positions with a running max and sum, and
// leaves (unnormalised output, max, sum) for the merge.
constexpr int32_t kChunk = 256;

__global__ void DecodeSplitKernel(AttentionArgs a, int32_t split_len, int32_t num_splits,
                                  float* part_out, float* part_max, float* part_sum) {
  extern __shared__ float smem[];
  __shared__ float head_max[32], head_sum[32], head_alpha[32];
  const int32_t i = blockIdx.x;
  const int32_t row = a.tokens != nullptr ? a.tokens[i] : i;
  const int32_t kvh = blockIdx.y, split = blockIdx.z;
  const int32_t group = a.num_heads / a.num_kv_heads;
  const int32_t D = a.head_dim;
  const int32_t ctx = a.positions[row] + 1;
  const int32_t begin = split * split_len;
  const int32_t end = min(ctx, begin + split_len);
  const int64_t part0 = (static_cast<int64_t>(i) * a.num_heads + kvh * group) * num_splits + split;
  float* q_s = smem;             // [group][D]
  float* o_s = q_s + group * D;  // [group][D]
  float* p_s = o_s + group * D;  // [group][kChunk]
  const bf16* q =
      a.q + static_cast<int64_t>(row) * a.q_stride + static_cast<int64_t>(kvh) * group * D;
  for (int32_t idx = threadIdx.x; idx < group * D; idx += blockDim.x) {
    q_s[idx] = __bfloat162float(q[idx]);
    o_s[idx] = 0;
  }
  for (int32_t h = threadIdx.x; h < group; h += blockDim.x) {
    head_max[h] = -INFINITY;
    head_sum[h] = 0;
  }
  __syncthreads();
  const int32_t* table = a.block_tables + a.table_offset[row];
  const int32_t lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  const int32_t per_lane = (D + 31) / 32;
  for (int32_t c0 = begin; c0 < end; c0 += kChunk) {
    const int32_t len = min(kChunk, end - c0);
    for (int32_t j = warp; j < len; j += warps) {
      const bf16* k = a.k_cache + CacheRow(table, c0 + j, a.num_kv_heads, kvh, D);
      float kr[kMaxHeadDimDecode / 32];
#pragma unroll
      for (int32_t e = 0; e < kMaxHeadDimDecode / 32; ++e) {
        const int32_t d = lane + 32 * e;
        kr[e] = (e < per_lane && d < D) ? __bfloat162float(k[d]) : 0.0f;
      }
      for (int32_t h = 0; h < group; ++h) {
        float s = 0;
#pragma unroll
        for (int32_t e = 0; e < kMaxHeadDimDecode / 32; ++e) {
          const int32_t d = lane + 32 * e;
          if (e < per_lane && d < D) s += q_s[h * D + d] * kr[e];
        }
        s = WarpSum(s);
        if (lane == 0) p_s[h * kChunk + j] = s * a.scale;
      }
    }
    __syncthreads();
    for (int32_t h = warp; h < group; h += warps) {
      float* p = p_s + h * kChunk;
      float m = -INFINITY;
      for (int32_t j = lane; j < len; j += 32) m = fmaxf(m, p[j]);
      m = fmaxf(WarpMax(m), head_max[h]);
      float sum = 0;
      for (int32_t j = lane; j < len; j += 32) {
        const float e = __expf(p[j] - m);
        p[j] = e;
        sum += e;
      }
      sum = WarpSum(sum);
      __syncwarp();
      if (lane == 0) {
        const float alpha = __expf(head_max[h] - m);  // 0 on the first chunk
        head_alpha[h] = alpha;
        head_sum[h] = head_sum[h] * alpha + sum;
        head_max[h] = m;
      }
    }
    __syncthreads();
    for (int32_t idx = threadIdx.x; idx < group * D; idx += blockDim.x) {
      const int32_t h = idx / D, d = idx % D;
      const float* p = p_s + h * kChunk;
      float acc = 0;
      for (int32_t j = 0; j < len; ++j) {
        acc +=
            p[j] * __bfloat162float(a.v_cache[CacheRow(table, c0 + j, a.num_kv_heads, kvh, D) + d]);
      }
      o_s[idx] = o_s[idx] * head_alpha[h] + acc;
    }
    __syncthreads();
  }
  for (int32_t idx = threadIdx.x; idx < group * D; idx += blockDim.x) {
    part_out[(part0 + (idx / D) * num_splits) * D + idx % D] = o_s[idx];
  }
  for (int32_t h = threadIdx.x; h < group; h += blockDim.x) {
    part_max[part0 + h * num_splits] = head_max[h];
    part_sum[part0 + h * num_splits] = head_sum[h];
  }
}

// Grid (rows, heads): merges the splits of one head.
__global__ void DecodeMergeKernel(AttentionArgs a, int32_t num_splits, const float* part_out,
                                  const float* part_max, const float* part_sum) {
  const int32_t i = blockIdx.x, h = blockIdx.y;
  const int32_t row = a.tokens != nullptr ? a.tokens[i] : i;
  const int32_t D = a.head_dim;
  const int64_t part0 = (static_cast<int64_t>(i) * a.num_heads + h) * num_splits;
  float m = -INFINITY;
  for (int32_t s = 0; s < num_splits; ++s) m = fmaxf(m, part_max[part0 + s]);
  float total = 0;
  for (int32_t s = 0; s < num_splits; ++s) {
    total +=
        part_sum[part0 + s] == 0 ? 0.0f : __expf(part_max[part0 + s] - m) * part_sum[part0 + s];
  }
  const float inv = 1.0f / total;
  bf16* out = a.out + static_cast<int64_t>(row) * a.num_heads * D + static_cast<int64_t>(h) * D;
  for (int32_t d = threadIdx.x; d < D; d += blockDim.x) {
    float acc = 0;
    for (int32_t s = 0; s < num_splits; ++s) {
      if (part_sum[part0 + s] != 0)
        acc += __expf(part_max[part0 + s] - m) * part_out[(part0 + s) * D + d];
    }
    out[d] = __float2bfloat16(acc * inv);
  }
}

int32_t SplitLen(int32_t max_context, int32_t num_splits) {
  const int32_t len = (max_context + num_splits - 1) / num_splits;
  return (len + kChunk - 1) / kChunk * kChunk;
}

// ---- prefill ----
namespace wmma = nvcuda::wmma;
constexpr int kTile = 64;  // queries per tile and keys per step
constexpr int kWarps = 4;  // each warp owns 16 query rows
constexpr int kSPad = 4;   // float row padding (wmma: ldm % 4 == 0)
constexpr int kHPad = 8;   // bf16 row padding (wmma: ldm % 8 == 0)

template <int D>
struct PrefillSmem {
  static constexpr int kLdh = D + kHPad;      // Q, K, V rows
  static constexpr int kLds = kTile + kSPad;  // S rows (float)
  static constexpr int kLdp = kTile + kHPad;  // P rows (bf16)
  static constexpr int kLdo = D + kSPad;      // O rows (float)
  static constexpr size_t kQ = 0;
  // Keys, then values, of one step share a buffer (never live together), so
  // head_dim 128 fits the 99 KB a block may have on sm_86/sm_89 too.
  static constexpr size_t kKV = kQ + sizeof(bf16) * kTile * kLdh;
  static constexpr size_t kS = kKV + sizeof(bf16) * kTile * kLdh;
  static constexpr size_t kP = kS + sizeof(float) * kTile * kLds;
  static constexpr size_t kO = kP + sizeof(bf16) * kTile * kLdp;
  static constexpr size_t kStats = kO + sizeof(float) * kTile * kLdo;  // max, sum, alpha
  static constexpr size_t kBytes = kStats + sizeof(float) * 3 * kTile;
};

// Grid (tiles, query heads), 128 threads. Warps share the K/V tiles and own
// their query rows for softmax and the output update.
template <int D>
__global__ void __launch_bounds__(kWarps * 32)
    PrefillKernel(AttentionArgs a, const PrefillTile* tiles) {
  using L = PrefillSmem<D>;
  extern __shared__ __align__(128) unsigned char prefill_smem[];
  unsigned char* smem = prefill_smem;
  bf16* Qs = reinterpret_cast<bf16*>(smem + L::kQ);
  bf16* KVs = reinterpret_cast<bf16*>(smem + L::kKV);
  float* S = reinterpret_cast<float*>(smem + L::kS);
  bf16* P = reinterpret_cast<bf16*>(smem + L::kP);
  float* O = reinterpret_cast<float*>(smem + L::kO);
  float* row_max = reinterpret_cast<float*>(smem + L::kStats);
  float* row_sum = row_max + kTile;
  float* row_alpha = row_sum + kTile;

  const PrefillTile tile = tiles[blockIdx.x];
  const int32_t h = blockIdx.y;
  const int32_t kvh = h / (a.num_heads / a.num_kv_heads);
  const int32_t* table = a.block_tables + tile.table_offset;
  const int32_t warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  constexpr int kVec = 8;  // bf16 per 16-byte load

  for (int32_t idx = threadIdx.x; idx < kTile * D / kVec; idx += blockDim.x) {
    const int32_t r = idx / (D / kVec), c = (idx % (D / kVec)) * kVec;
    uint4 v = make_uint4(0, 0, 0, 0);
    if (r < tile.count) {
      v = *reinterpret_cast<const uint4*>(a.q +
                                          static_cast<int64_t>(tile.first_row + r) * a.q_stride +
                                          static_cast<int64_t>(h) * D + c);
    }
    *reinterpret_cast<uint4*>(Qs + r * L::kLdh + c) = v;
  }
  for (int32_t idx = threadIdx.x; idx < kTile * L::kLdo; idx += blockDim.x) O[idx] = 0;
  for (int32_t r = threadIdx.x; r < kTile; r += blockDim.x) {
    row_max[r] = -INFINITY;
    row_sum[r] = 0;
  }
  const int32_t last = tile.start_pos + tile.count - 1;
  const int32_t steps = last / kTile + 1;
  for (int32_t step = 0; step < steps; ++step) {
    const int32_t p0 = step * kTile;
    // One step's 64 keys (then values) into shared memory; positions past
    // the tile's last query read as zeros.
    auto load = [&](const bf16* cache) {
      for (int32_t idx = threadIdx.x; idx < kTile * D / kVec; idx += blockDim.x) {
        const int32_t r = idx / (D / kVec), c = (idx % (D / kVec)) * kVec;
        const int32_t pos = p0 + r;
        uint4 v = make_uint4(0, 0, 0, 0);
        if (pos <= last) {
          v = *reinterpret_cast<const uint4*>(cache + CacheRow(table, pos, a.num_kv_heads, kvh, D) +
                                              c);
        }
        *reinterpret_cast<uint4*>(KVs + r * L::kLdh + c) = v;
      }
    };
    __syncthreads();  // every warp is done with the previous step's values
    load(a.k_cache);
    __syncthreads();

    // S = Q K^T for this warp's 16 rows.
    const int32_t r0 = warp * 16;
    for (int32_t n = 0; n < kTile / 16; ++n) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
      wmma::fill_fragment(acc, 0.0f);
      for (int32_t k = 0; k < D / 16; ++k) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> fa;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> fb;
        wmma::load_matrix_sync(fa, Qs + r0 * L::kLdh + k * 16, L::kLdh);
        wmma::load_matrix_sync(fb, KVs + n * 16 * L::kLdh + k * 16, L::kLdh);
        wmma::mma_sync(acc, fa, fb, acc);
      }
      wmma::store_matrix_sync(S + r0 * L::kLds + n * 16, acc, L::kLds, wmma::mem_row_major);
    }
    __syncwarp();

    // Online softmax over the warp's rows; each lane takes two columns.
    for (int32_t r = r0; r < r0 + 16; ++r) {
      const int32_t qpos = tile.start_pos + r;
      float s[2];
      float m = -INFINITY;
#pragma unroll
      for (int32_t e = 0; e < 2; ++e) {
        const int32_t c = lane + 32 * e;
        const bool valid = r < tile.count && p0 + c <= qpos;
        s[e] = valid ? S[r * L::kLds + c] * a.scale : -INFINITY;
        m = fmaxf(m, s[e]);
      }
      m = WarpMax(m);
      const float m_old = row_max[r];
      const float m_new = fmaxf(m_old, m);
      const float m_use = m_new == -INFINITY ? 0.0f : m_new;
      float sum = 0;
#pragma unroll
      for (int32_t e = 0; e < 2; ++e) {
        const float p = __expf(s[e] - m_use);
        P[r * L::kLdp + lane + 32 * e] = __float2bfloat16(p);
        sum += p;
      }
      sum = WarpSum(sum);
      __syncwarp();
      if (lane == 0) {
        const float alpha = __expf(m_old - m_use);
        row_alpha[r] = alpha;
        row_sum[r] = row_sum[r] * alpha + sum;
        row_max[r] = m_new;
      }
      __syncwarp();
    }
    for (int32_t idx = lane; idx < 16 * D; idx += 32) {
      const int32_t r = r0 + idx / D, c = idx % D;
      O[r * L::kLdo + c] *= row_alpha[r];
    }
    __syncwarp();

    __syncthreads();  // every warp is done with the keys
    load(a.v_cache);
    __syncthreads();

    // O += P V for the warp's rows.
    for (int32_t n = 0; n < D / 16; ++n) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
      wmma::load_matrix_sync(acc, O + r0 * L::kLdo + n * 16, L::kLdo, wmma::mem_row_major);
      for (int32_t k = 0; k < kTile / 16; ++k) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> fa;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> fb;
        wmma::load_matrix_sync(fa, P + r0 * L::kLdp + k * 16, L::kLdp);
        wmma::load_matrix_sync(fb, KVs + k * 16 * L::kLdh + n * 16, L::kLdh);
        wmma::mma_sync(acc, fa, fb, acc);
      }
      wmma::store_matrix_sync(O + r0 * L::kLdo + n * 16, acc, L::kLdo, wmma::mem_row_major);
    }
  }
  __syncthreads();
  for (int32_t idx = threadIdx.x; idx < tile.count * D; idx += blockDim.x) {
    const int32_t r = idx / D, c = idx % D;
    a.out[static_cast<int64_t>(tile.first_row + r) * a.num_heads * D + static_cast<int64_t>(h) * D +
          c] = __float2bfloat16(O[r * L::kLdo + c] / row_sum[r]);
  }
}

template <int D>
cudaError_t LaunchPrefill(const AttentionArgs& a, const PrefillTile* tiles, int32_t num_tiles,
                          cudaStream_t stream) {
  constexpr size_t bytes = PrefillSmem<D>::kBytes;
  static const cudaError_t attr = cudaFuncSetAttribute(
      PrefillKernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes));
  if (attr != cudaSuccess) return attr;
  PrefillKernel<D><<<dim3(num_tiles, a.num_heads), kWarps * 32, bytes, stream>>>(a, tiles);
  return cudaGetLastError();
}

}  // namespace

size_t DecodeSmemBytes(int32_t num_heads, int32_t num_kv_heads, int32_t head_dim) {
  const int32_t group = num_heads / num_kv_heads;
  return sizeof(float) * static_cast<size_t>(group) * (2 * head_dim + kChunk);
}

cudaError_t PrepareDecodeAttention(int32_t num_heads, int32_t num_kv_heads, int32_t head_dim) {
  if (num_kv_heads < 1 || num_heads % num_kv_heads != 0 || num_heads / num_kv_heads > 32 ||
      head_dim > kMaxHeadDimDecode) {
    return cudaErrorInvalidValue;
  }
  int device = 0, optin = 0;
  cudaError_t e = cudaGetDevice(&device);
  if (e == cudaSuccess) {
    e = cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
  }
  if (e != cudaSuccess) return e;
  cudaFuncAttributes attr{};
  e = cudaFuncGetAttributes(&attr, DecodeSplitKernel);
  if (e != cudaSuccess) return e;
  const size_t dynamic = DecodeSmemBytes(num_heads, num_kv_heads, head_dim);
  if (dynamic + attr.sharedSizeBytes > static_cast<size_t>(optin)) return cudaErrorInvalidValue;
  return cudaFuncSetAttribute(DecodeSplitKernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                              static_cast<int>(dynamic));
}

int32_t DecodeSplits(int32_t n, int32_t num_kv_heads, int32_t max_context, int32_t sm_count) {
  const int32_t by_length = (max_context + kChunk - 1) / kChunk;
  const int64_t blocks = static_cast<int64_t>(n) * num_kv_heads;
  const int32_t to_fill =
      static_cast<int32_t>(std::max<int64_t>(1, (2 * sm_count + blocks - 1) / blocks));
  return std::max(1, std::min({by_length, to_fill, 32}));
}

int64_t DecodeScratchFloats(int32_t n, int32_t num_heads, int32_t head_dim, int32_t num_splits) {
  return static_cast<int64_t>(n) * num_heads * num_splits * (head_dim + 2);
}

cudaError_t LaunchDecodeAttention(const AttentionArgs& a, int32_t max_context, int32_t num_splits,
                                  float* scratch, cudaStream_t stream) {
  if (a.n == 0) return cudaSuccess;
  if (a.head_dim > kMaxHeadDimDecode || a.num_heads / a.num_kv_heads > 32) {
    return cudaErrorInvalidValue;
  }
  const int64_t parts = static_cast<int64_t>(a.n) * a.num_heads * num_splits;
  float* part_out = scratch;
  float* part_max = scratch + parts * a.head_dim;
  float* part_sum = part_max + parts;
  const size_t smem = DecodeSmemBytes(a.num_heads, a.num_kv_heads, a.head_dim);
  DecodeSplitKernel<<<dim3(a.n, a.num_kv_heads, num_splits), kDecodeThreads, smem, stream>>>(
      a, SplitLen(max_context, num_splits), num_splits, part_out, part_max, part_sum);
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return e;
  DecodeMergeKernel<<<dim3(a.n, a.num_heads), a.head_dim >= 128 ? 128 : 64, 0, stream>>>(
      a, num_splits, part_out, part_max, part_sum);
  return cudaGetLastError();
}

bool PrefillAttentionSupports(int32_t head_dim) {
  if (head_dim != 64 && head_dim != 128) return false;
  int device = 0, optin = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device) !=
          cudaSuccess) {
    return false;
  }
  const size_t need = head_dim == 64 ? PrefillSmem<64>::kBytes : PrefillSmem<128>::kBytes;
  return need <= static_cast<size_t>(optin);
}

cudaError_t LaunchPrefillAttention(const AttentionArgs& a, const PrefillTile* tiles,
                                   int32_t num_tiles, cudaStream_t stream) {
  if (num_tiles == 0) return cudaSuccess;
  if (a.head_dim == 64) return LaunchPrefill<64>(a, tiles, num_tiles, stream);
  if (a.head_dim == 128) return LaunchPrefill<128>(a, tiles, num_tiles, stream);
  return cudaErrorInvalidValue;
}

}  // namespace tokenfab::cuda
