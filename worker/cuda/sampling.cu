// Token choice on the GPU, one 1024-thread block per row of logits, in the
// order of engine/sampler.h. Top-k and top-p keep the same set the CPU
// sampler's sort would keep (value descending, ties by lower id): a radix
// select over the logits' ordered bit patterns finds the cut value, and the
// ties at the cut are taken in id order. Probability mass is summed in 32.32
// fixed point, so every sum is exact and the result does not depend on
// thread scheduling: the same seed and draw give the same token.
#include <curand_kernel.h>

#include "worker/cuda/device_util.cuh"
#include "worker/cuda/kernels.h"

namespace tokenfab::cuda {
namespace {

constexpr int kThreads = 1024;
constexpr int32_t kSeen = 1 << 30;  // in counts[]: token is in prompt or output
constexpr float kGreedyTemperature = 1e-5f;

// Larger float, larger key; -inf is the excluded marker and never kept.
__device__ __forceinline__ uint32_t Key(float f) {
  const uint32_t u = f == 0.0f ? 0u : __float_as_uint(f);  // -0 and +0 are one value
  return (u & 0x80000000u) != 0 ? ~u : (u | 0x80000000u);
}

// Weight of a kept entry for top-p and the draw: exp(v - max) in 32.32.
__device__ __forceinline__ uint64_t Mass(float v, float max) {
  if (v == -INFINITY) return 0;
  return static_cast<uint64_t>(static_cast<double>(__expf(v - max)) * 4294967296.0);
}

struct Shared {
  uint64_t hist[256];
  uint64_t scan[kThreads / 32];
  float red[32];
  int32_t red_i[32];
  uint32_t prefix;
  uint64_t need;
  int32_t choice;
};

// Index of the largest value, the lowest index among equals (0 when all are
// -inf), given to every thread.
__device__ int32_t BlockArgMax(const float* w, int32_t vocab, Shared& sh) {
  float best = -INFINITY;
  int32_t best_i = 0x7fffffff;
  for (int32_t i = threadIdx.x; i < vocab; i += blockDim.x) {
    if (w[i] > best || best_i == 0x7fffffff) best = w[i], best_i = i;
  }
  for (int o = 16; o > 0; o >>= 1) {
    const float ob = __shfl_xor_sync(0xffffffffu, best, o);
    const int32_t oi = __shfl_xor_sync(0xffffffffu, best_i, o);
    if (ob > best || (ob == best && oi < best_i)) best = ob, best_i = oi;
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();
  if (lane == 0) {
    sh.red[warp] = best;
    sh.red_i[warp] = best_i;
  }
  __syncthreads();
  if (warp == 0) {
    const int warps = blockDim.x >> 5;
    best = lane < warps ? sh.red[lane] : -INFINITY;
    best_i = lane < warps ? sh.red_i[lane] : 0x7fffffff;
    for (int o = 16; o > 0; o >>= 1) {
      const float ob = __shfl_xor_sync(0xffffffffu, best, o);
      const int32_t oi = __shfl_xor_sync(0xffffffffu, best_i, o);
      if (ob > best || (ob == best && oi < best_i)) best = ob, best_i = oi;
    }
    if (lane == 0) sh.choice = best_i == 0x7fffffff ? 0 : best_i;
  }
  __syncthreads();
  return sh.choice;
}

// Exclusive prefix sum of one value per thread, in thread order; `total`
// gets the sum. Integer, so exact.
__device__ uint64_t BlockExclusiveScan(uint64_t v, uint64_t* total, Shared& sh) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  uint64_t inc = v;
  for (int o = 1; o < 32; o <<= 1) {
    const uint64_t n = __shfl_up_sync(0xffffffffu, inc, o);
    if (lane >= o) inc += n;
  }
  __syncthreads();
  if (lane == 31) sh.scan[warp] = inc;
  __syncthreads();
  if (warp == 0) {
    uint64_t w = sh.scan[lane];
    for (int o = 1; o < 32; o <<= 1) {
      const uint64_t n = __shfl_up_sync(0xffffffffu, w, o);
      if (lane >= o) w += n;
    }
    sh.scan[lane] = w;  // inclusive over warps
  }
  __syncthreads();
  *total = sh.scan[31];
  return (warp > 0 ? sh.scan[warp - 1] : 0) + inc - v;
}

// Finds the key of the entry where the running weight (entries by key
// descending) first reaches `target`; returns it and leaves in sh.need the
// weight still needed from entries with exactly that key.
template <typename WeightFn>
__device__ uint32_t RadixSelect(const float* w, int32_t vocab, uint64_t target, WeightFn weight,
                                Shared& sh) {
  if (threadIdx.x == 0) {
    sh.prefix = 0;
    sh.need = target;
  }
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int b = threadIdx.x; b < 256; b += blockDim.x) sh.hist[b] = 0;
    __syncthreads();
    const uint32_t prefix = sh.prefix;
    const uint32_t mask = shift == 24 ? 0u : (0xffffffffu << (shift + 8));
    for (int32_t i = threadIdx.x; i < vocab; i += blockDim.x) {
      if (w[i] == -INFINITY) continue;
      const uint32_t k = Key(w[i]);
      if ((k & mask) != (prefix & mask)) continue;
      atomicAdd(reinterpret_cast<unsigned long long*>(&sh.hist[(k >> shift) & 0xff]),
                static_cast<unsigned long long>(weight(w[i])));
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      uint64_t acc = 0;
      int b = 255;
      for (; b > 0; --b) {
        if (acc + sh.hist[b] >= sh.need) break;
        acc += sh.hist[b];
      }
      sh.prefix |= static_cast<uint32_t>(b) << shift;
      sh.need -= acc;
    }
    __syncthreads();
  }
  return sh.prefix;
}

// Keeps entries with key above `cut`, and those equal to it in id order
// while the weight before them is below `need`; the rest become -inf.
template <typename WeightFn>
__device__ void KeepAbove(float* w, int32_t vocab, uint32_t cut, uint64_t need, WeightFn weight,
                          Shared& sh) {
  const int32_t chunk = (vocab + kThreads - 1) / kThreads;
  const int32_t b = threadIdx.x * chunk, e = min(vocab, b + chunk);
  uint64_t tie = 0;
  for (int32_t i = b; i < e; ++i) {
    if (w[i] != -INFINITY && Key(w[i]) == cut) tie += weight(w[i]);
  }
  uint64_t total;
  uint64_t before = BlockExclusiveScan(tie, &total, sh);
  for (int32_t i = b; i < e; ++i) {
    if (w[i] == -INFINITY) continue;
    const uint32_t k = Key(w[i]);
    if (k > cut) continue;
    if (k == cut && before < need) {
      before += weight(w[i]);
      continue;
    }
    w[i] = -INFINITY;
  }
  __syncthreads();
}

__global__ void __launch_bounds__(kThreads)
    SampleKernel(const float* logits, int32_t vocab, const SamplingRow* rows,
                 const int32_t* history, float* work, int32_t* counts, int32_t* out_tokens) {
  __shared__ Shared sh;
  const SamplingRow r = rows[blockIdx.x];
  const float* in = logits + static_cast<int64_t>(r.logits_row) * vocab;
  float* w = work + static_cast<int64_t>(blockIdx.x) * vocab;
  int32_t* cnt = counts + static_cast<int64_t>(blockIdx.x) * vocab;
  for (int32_t i = threadIdx.x; i < vocab; i += blockDim.x) {
    const float v = in[i];
    w[i] = isnan(v) ? -INFINITY : v;
  }
  const bool rep = r.repetition_penalty != 0 && r.repetition_penalty != 1;
  const bool pres = r.presence_penalty != 0 || r.frequency_penalty != 0;
  if (rep || pres) {
    const int32_t* hist = history + r.history_offset;
    __syncthreads();
    for (int32_t i = threadIdx.x; i < r.history_len; i += blockDim.x) {
      const int32_t t = hist[i];
      if (t < 0 || t >= vocab) continue;
      if (i >= r.prompt_len) atomicAdd(&cnt[t], 1);
      if (rep) atomicOr(&cnt[t], kSeen);
    }
    __syncthreads();
    // Exactly one thread sees each token's count (and clears it).
    for (int32_t i = threadIdx.x; i < r.history_len; i += blockDim.x) {
      const int32_t t = hist[i];
      if (t < 0 || t >= vocab) continue;
      const int32_t old = atomicExch(&cnt[t], 0);
      if (old == 0) continue;
      float v = w[t];
      if ((old & kSeen) != 0) v = v > 0 ? v / r.repetition_penalty : v * r.repetition_penalty;
      const int32_t c = old & ~kSeen;
      // Rounded step by step, as the host computes it (no fused multiply-add).
      if (pres && c > 0) {
        v = __fsub_rn(v, __fadd_rn(__fmul_rn(r.frequency_penalty, static_cast<float>(c)),
                                   r.presence_penalty));
      }
      w[t] = v;
    }
  }
  __syncthreads();

  // The argmax (ties to the lower id): the greedy choice, and the fallback
  // when filtering leaves no probability mass (as the CPU sampler falls back).
  const int32_t argmax = BlockArgMax(w, vocab, sh);
  if (r.temperature < kGreedyTemperature) {
    if (threadIdx.x == 0) out_tokens[blockIdx.x] = argmax;
    return;
  }

  const float inv_t = 1.0f / r.temperature;
  for (int32_t i = threadIdx.x; i < vocab; i += blockDim.x) {
    if (w[i] != -INFINITY) w[i] *= inv_t;
  }
  __syncthreads();
  if (r.top_k > 0 && r.top_k < vocab) {
    auto one = [](float) -> uint64_t { return 1; };
    const uint32_t cut = RadixSelect(w, vocab, static_cast<uint64_t>(r.top_k), one, sh);
    KeepAbove(w, vocab, cut, sh.need, one, sh);
  }
  float top = -INFINITY;
  for (int32_t i = threadIdx.x; i < vocab; i += blockDim.x) top = fmaxf(top, w[i]);
  top = BlockMax(top, sh.red);
  if (top == -INFINITY) top = 0;  // nothing finite: every mass is 0
  auto mass = [top](float v) -> uint64_t { return Mass(v, top); };
  if (r.top_p > 0 && r.top_p < 1) {
    uint64_t local = 0;
    for (int32_t i = threadIdx.x; i < vocab; i += blockDim.x) local += mass(w[i]);
    uint64_t total;
    BlockExclusiveScan(local, &total, sh);
    const uint64_t target = max(static_cast<uint64_t>(1),
                                static_cast<uint64_t>(ceil(static_cast<double>(total) * r.top_p)));
    const uint32_t cut = RadixSelect(w, vocab, target, mass, sh);
    KeepAbove(w, vocab, cut, sh.need, mass, sh);
  }
  if (r.min_p > 0) {
    for (int32_t i = threadIdx.x; i < vocab; i += blockDim.x) {
      if (w[i] != -INFINITY && __expf(w[i] - top) < r.min_p) w[i] = -INFINITY;
    }
    __syncthreads();
  }

  // The draw: the first id (in id order) whose running mass passes u * total.
  const int32_t chunk = (vocab + kThreads - 1) / kThreads;
  const int32_t b = threadIdx.x * chunk, e = min(vocab, b + chunk);
  uint64_t local = 0;
  for (int32_t i = b; i < e; ++i) local += mass(w[i]);
  uint64_t total;
  uint64_t before = BlockExclusiveScan(local, &total, sh);
  if (threadIdx.x == 0) {
    curandStatePhilox4_32_10_t st;
    curand_init(r.seed, r.draw, 0, &st);
    const uint4 bits = curand4(&st);
    const double u =
        static_cast<double>((static_cast<uint64_t>(bits.x) << 21) ^ bits.y) * 0x1.0p-53;
    sh.need = static_cast<uint64_t>(u * static_cast<double>(total));
    if (total > 0 && sh.need >= total) sh.need = total - 1;  // u * total rounded up
    sh.choice = -1;
  }
  __syncthreads();
  const uint64_t target = sh.need;
  if (total > 0 && before <= target && target < before + local) {
    for (int32_t i = b; i < e; ++i) {
      before += mass(w[i]);
      if (target < before) {
        sh.choice = i;
        break;
      }
    }
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    // No mass left (every logit -inf, or min_p above 1): the argmax.
    out_tokens[blockIdx.x] = sh.choice >= 0 ? sh.choice : argmax;
  }
}

}  // namespace

cudaError_t LaunchSample(const float* logits, int32_t vocab, const SamplingRow* rows,
                         int32_t n_rows, const int32_t* history, float* work, int32_t* counts,
                         int32_t* out_tokens, cudaStream_t stream) {
  if (n_rows == 0) return cudaSuccess;
  SampleKernel<<<n_rows, kThreads, 0, stream>>>(logits, vocab, rows, history, work, counts,
                                                out_tokens);
  return cudaGetLastError();
}

}  // namespace tokenfab::cuda
