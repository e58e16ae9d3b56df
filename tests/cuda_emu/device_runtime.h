// What a CUDA kernel sees, for the CUDA emulator: the CUDA sources of
// worker/cuda are compiled as C++ with this header forced in first
// (transform_cu.py rewrites the two constructs C++ cannot parse: `<<<...>>>`
// launches and `extern __shared__` arrays). Each CUDA thread of a block is a
// fiber on the OS thread that runs the block; __syncthreads, __syncwarp and
// the warp shuffles are barriers between those fibers (executor.cc), so a
// barrier some threads never reach is reported as a deadlock instead of
// hanging. Only __syncthreads and __syncwarp order memory between threads
// for the race check (racecheck.h); a shuffle does not.
//
// Per-thread built-ins (threadIdx, blockIdx, blockDim, gridDim) are
// thread-local variables the executor sets before it resumes a fiber.
// `__shared__` variables are function-local statics of the OS thread, which
// runs one block at a time: one copy per block, as on the GPU, refilled with
// garbage at each block's start (FreshShared), as dynamic shared memory is.
//
// Arithmetic is the host's float arithmetic: __expf is expf, rsqrtf is
// 1/sqrtf, the tensor-core products of mma.h are float FMAs. Results match a
// GPU to rounding, not bit for bit.
#ifndef TOKENFAB_TESTS_CUDA_EMU_DEVICE_RUNTIME_H_
#define TOKENFAB_TESTS_CUDA_EMU_DEVICE_RUNTIME_H_

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>

namespace tokenfab::cuda_emu {

// Thread-local storage of the emulator's shared library, read on every
// threadIdx and every barrier: the initial-exec model makes each access one
// load instead of a __tls_get_addr call.
#define TOKENFAB_EMU_TLS __attribute__((tls_model("initial-exec"))) thread_local

// Set by the executor for the fiber it resumes (thread) and for the block
// it runs (the rest).
extern TOKENFAB_EMU_TLS uint3 t_thread_idx;
extern TOKENFAB_EMU_TLS uint3 t_block_idx;
extern TOKENFAB_EMU_TLS dim3 t_block_dim;
extern TOKENFAB_EMU_TLS dim3 t_grid_dim;

void SyncThreads();
// __syncwarp: a barrier of the lanes in `mask` that orders their memory.
void SyncWarp(unsigned mask);
// Where a warp-wide operation (mma_sync) brings the lanes in `mask`
// together: a barrier that orders no memory (for the race check).
void ConvergeWarp(unsigned mask);
int LaneId();
// Each lane in `mask` gives 8 bytes; after a barrier of those lanes, the
// warp's 32 values (indexed by lane). Valid until the lane's next exchange.
const uint64_t* WarpExchange(unsigned mask, uint64_t value);
// The block's dynamic shared memory (the launch's third argument).
void* DynamicShared();
// A static __shared__ variable `name` at `p` (transform_cu.py calls this
// after its declaration): the first thread of a block to get here fills it
// with garbage, so a block never reads what an earlier block left, and
// hands it to the race check.
void FreshShared(void* p, size_t bytes, const char* name);

struct LaunchConfig {
  dim3 grid;
  dim3 block;
  size_t shared_bytes = 0;
  cudaStream_t stream = nullptr;
};
inline LaunchConfig Config(dim3 grid, dim3 block, size_t shared_bytes = 0,
                           cudaStream_t stream = nullptr) {
  return {grid, block, shared_bytes, stream};
}

// Checks the launch, then enqueues `body` (one CUDA thread's run of the
// kernel) on the stream for every thread of the grid. Errors go where a
// real launch's do: cudaGetLastError, or the device's sticky error.
void Launch(const char* name, const void* kernel, const LaunchConfig& config,
            std::function<void()> body);

// `kernel<<<config>>>(args...)`: the arguments are converted to the
// kernel's parameter types and copied at launch, as CUDA does.
template <typename... P, typename... A>
void LaunchKernel(const char* name, void (*kernel)(P...), const LaunchConfig& config, A&&... args) {
  static_assert(sizeof...(P) == sizeof...(A), "kernel launched with the wrong argument count");
  auto params = std::make_shared<std::tuple<std::decay_t<P>...>>(std::forward<A>(args)...);
  Launch(name, reinterpret_cast<const void*>(kernel), config,
         [kernel, params] { std::apply(kernel, *params); });
}

}  // namespace tokenfab::cuda_emu

// nvcc's overloads that take a kernel itself, not a const void*.
template <typename T>
cudaError_t cudaFuncSetAttribute(T* kernel, cudaFuncAttribute attr, int value) {
  return ::cudaFuncSetAttribute(reinterpret_cast<const void*>(kernel), attr, value);
}
template <typename T>
cudaError_t cudaFuncGetAttributes(cudaFuncAttributes* attr, T* kernel) {
  return ::cudaFuncGetAttributes(attr, reinterpret_cast<const void*>(kernel));
}

// ---- built-in variables and qualifiers ----
#define threadIdx (::tokenfab::cuda_emu::t_thread_idx)
#define blockIdx (::tokenfab::cuda_emu::t_block_idx)
#define blockDim (::tokenfab::cuda_emu::t_block_dim)
#define gridDim (::tokenfab::cuda_emu::t_grid_dim)
#undef __global__
#define __global__
#undef __device__
#define __device__
#undef __host__
#define __host__
#undef __shared__
#define __shared__ static thread_local
#undef __launch_bounds__
#define __launch_bounds__(...)
#ifndef __CUDA_ARCH__
#define __CUDA_ARCH__ 900  // what the emulator stands in for
#endif

// ---- synchronisation ----
inline void __syncthreads() { ::tokenfab::cuda_emu::SyncThreads(); }
inline void __syncwarp(unsigned mask = 0xffffffffu) { ::tokenfab::cuda_emu::SyncWarp(mask); }

namespace tokenfab::cuda_emu {
template <typename T>
uint64_t ToBits(T v) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>,
                "shuffle of a type over 8 bytes");
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  return bits;
}
template <typename T>
T FromBits(uint64_t bits) {
  T v;
  std::memcpy(&v, &bits, sizeof(T));
  return v;
}
// The value of lane `src` within the width-lane segment of the caller, or
// the caller's own when `src` is outside it or not in `mask`.
template <typename T>
T Shuffle(unsigned mask, T v, int src, int width) {
  const uint64_t* slots = WarpExchange(mask, ToBits(v));
  const int lane = LaneId();
  if (width <= 0 || width > 32) width = 32;
  const int base = lane / width * width;
  if (src < base || src >= base + width || src >= 32 || ((mask >> src) & 1u) == 0) return v;
  return FromBits<T>(slots[src]);
}
}  // namespace tokenfab::cuda_emu

template <typename T>
T __shfl_sync(unsigned mask, T v, int src_lane, int width = 32) {
  const int lane = ::tokenfab::cuda_emu::LaneId();
  const int w = width <= 0 || width > 32 ? 32 : width;
  return ::tokenfab::cuda_emu::Shuffle(mask, v, lane / w * w + src_lane % w, w);
}
template <typename T>
T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
  return ::tokenfab::cuda_emu::Shuffle(mask, v, ::tokenfab::cuda_emu::LaneId() ^ lane_mask, width);
}
namespace tokenfab::cuda_emu {
// From `delta` lanes away (negative: lower lanes), or the caller's own value
// past the segment's edge.
template <typename T>
T ShuffleBy(unsigned mask, T v, int delta, int width) {
  const int lane = LaneId();
  const int w = width <= 0 || width > 32 ? 32 : width;
  const int base = lane / w * w, src = lane + delta;
  return Shuffle(mask, v, src < base || src >= base + w ? lane : src, w);
}
}  // namespace tokenfab::cuda_emu

template <typename T>
T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  return ::tokenfab::cuda_emu::ShuffleBy(mask, v, -static_cast<int>(delta), width);
}
template <typename T>
T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  return ::tokenfab::cuda_emu::ShuffleBy(mask, v, static_cast<int>(delta), width);
}
inline unsigned __ballot_sync(unsigned mask, int predicate) {
  const uint64_t* slots = ::tokenfab::cuda_emu::WarpExchange(mask, predicate != 0 ? 1u : 0u);
  unsigned out = 0;
  for (int l = 0; l < 32; ++l) {
    if (((mask >> l) & 1u) != 0 && slots[l] != 0) out |= 1u << l;
  }
  return out;
}
inline int __any_sync(unsigned mask, int predicate) { return __ballot_sync(mask, predicate) != 0; }
inline int __all_sync(unsigned mask, int predicate) {
  return __ballot_sync(mask, predicate) == __ballot_sync(mask, 1);
}

// ---- atomics (blocks may run on several OS threads) ----
template <typename T>
T atomicAdd(T* p, T v) {
  return std::atomic_ref<T>(*p).fetch_add(v);
}
template <typename T>
T atomicSub(T* p, T v) {
  return std::atomic_ref<T>(*p).fetch_sub(v);
}
template <typename T>
T atomicOr(T* p, T v) {
  return std::atomic_ref<T>(*p).fetch_or(v);
}
template <typename T>
T atomicAnd(T* p, T v) {
  return std::atomic_ref<T>(*p).fetch_and(v);
}
template <typename T>
T atomicExch(T* p, T v) {
  return std::atomic_ref<T>(*p).exchange(v);
}
template <typename T>
T atomicCAS(T* p, T expected, T desired) {
  std::atomic_ref<T>(*p).compare_exchange_strong(expected, desired);
  return expected;
}
template <typename T>
T atomicMax(T* p, T v) {
  std::atomic_ref<T> a(*p);
  T old = a.load();
  while (old < v && !a.compare_exchange_weak(old, v)) {
  }
  return old;
}
template <typename T>
T atomicMin(T* p, T v) {
  std::atomic_ref<T> a(*p);
  T old = a.load();
  while (v < old && !a.compare_exchange_weak(old, v)) {
  }
  return old;
}

// ---- math ----
template <typename A, typename B>
constexpr std::common_type_t<A, B> min(A a, B b) {
  return b < a ? b : a;
}
template <typename A, typename B>
constexpr std::common_type_t<A, B> max(A a, B b) {
  return a < b ? b : a;
}
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __sinf(float x) { return sinf(x); }
inline float __cosf(float x) { return cosf(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }
// IEEE single operations, rounded to nearest, never contracted.
inline float __fadd_rn(float a, float b) {
  volatile float r = a + b;
  return r;
}
inline float __fsub_rn(float a, float b) {
  volatile float r = a - b;
  return r;
}
inline float __fmul_rn(float a, float b) {
  volatile float r = a * b;
  return r;
}
inline float __fdiv_rn(float a, float b) {
  volatile float r = a / b;
  return r;
}
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline unsigned __float_as_uint(float f) {
  return ::tokenfab::cuda_emu::FromBits<unsigned>(::tokenfab::cuda_emu::ToBits(f));
}
inline int __float_as_int(float f) {
  return ::tokenfab::cuda_emu::FromBits<int>(::tokenfab::cuda_emu::ToBits(f));
}
inline float __uint_as_float(unsigned u) {
  return ::tokenfab::cuda_emu::FromBits<float>(::tokenfab::cuda_emu::ToBits(u));
}
inline float __int_as_float(int i) {
  return ::tokenfab::cuda_emu::FromBits<float>(::tokenfab::cuda_emu::ToBits(i));
}
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __clz(unsigned x) { return x == 0 ? 32 : __builtin_clz(x); }
inline int __ffs(unsigned x) { return __builtin_ffs(static_cast<int>(x)); }
inline unsigned __umulhi(unsigned a, unsigned b) {
  return static_cast<unsigned>((static_cast<uint64_t>(a) * b) >> 32);
}

#endif  // TOKENFAB_TESTS_CUDA_EMU_DEVICE_RUNTIME_H_
