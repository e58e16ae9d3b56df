// Small kernels that probe the CUDA emulator's semantics (warp shuffles,
// barriers, shared memory, atomics) and its refusals (a barrier some
// threads never reach), for cuda_emu_test.cc. Launchers as in
// worker/cuda/kernels.h: device pointers, a stream, the launch's error.
#ifndef TOKENFAB_TESTS_CUDA_EMU_PROBE_KERNELS_H_
#define TOKENFAB_TESTS_CUDA_EMU_PROBE_KERNELS_H_

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace tokenfab::cuda_emu::probe {

// One block of `n` threads over in[n]. Per thread t, out[5 * t + ...]:
// 0: the sum of in over t's warp (xor butterfly), 1: the inclusive prefix
// sum within the warp (shfl_up), 2: in of lane + 1 (shfl_down; the last lane
// keeps its own), 3: in of the warp's lane 0 (shfl_sync), 4: the ballot of
// odd values of in.
cudaError_t WarpOps(const int32_t* in, int32_t* out, int32_t n, cudaStream_t stream);

// One block of `n` threads: out[t] = in[n - 1 - t], through dynamic shared
// memory and a __syncthreads.
cudaError_t BlockReverse(const int32_t* in, int32_t* out, int32_t n, cudaStream_t stream);

// One block using `bytes` of dynamic shared memory; out[0] = bytes seen.
cudaError_t LargeShared(int32_t* out, size_t bytes, cudaStream_t stream);
// Raises the dynamic shared memory LargeShared may use.
cudaError_t AllowLargeShared(int32_t bytes);

// `blocks` blocks of 256 threads, each adding 1 to *counter.
cudaError_t AtomicCount(int32_t* counter, int32_t blocks, cudaStream_t stream);

// x[i] += 1 for i < n.
cudaError_t AddOne(float* x, int32_t n, cudaStream_t stream);

// A block of 64 threads: half of warp 0 waits at __syncthreads, the other
// half at a __syncwarp that needs the first half (a deadlock).
cudaError_t DivergentSyncThreads(int32_t* out, cudaStream_t stream);
// A warp whose odd lanes skip a full-mask shuffle.
cudaError_t DivergentShuffle(int32_t* out, cudaStream_t stream);

// A race on purpose: `blocks` blocks of `threads` threads, every thread
// writing its global index to out[0] and its threadIdx.x to
// out[1 + blockIdx.x]. Which write lands last depends on the order blocks
// and threads run in.
cudaError_t LastWriter(int32_t* out, int32_t blocks, int32_t threads, cudaStream_t stream);

// How the threads of HandoffKernel pass values through shared memory, for
// the race check (racecheck_test.cc). Each writes its slot, then reads
// another's: ordered (clean) or not (a race the check must report).
enum class Handoff : int32_t {
  kSyncThreads,           // __syncthreads, then the slot of a thread in the other warp
  kNoBarrier,             // the same without the barrier
  kSyncWarp,              // __syncwarp, then the slot of a lane of the same warp
  kSyncWarpAcrossWarps,   // __syncwarp, then a slot of the other warp
  kShuffle,               // a shuffle (orders no memory), then a lane of the same warp
  kOwnSlot,               // no barrier, its own slot
  kWriteAfterRead,        // reads a neighbour's slot, then overwrites its own
  kAtomicsThenSync,       // every thread adds 1 to a shared counter, __syncthreads, reads it
  kAtomicsThenRead,       // the same without the barrier
  kStaticNoBarrier,       // kNoBarrier on a static __shared__ array
  kGlobalSyncThreads,     // kSyncThreads through `out` (global memory)
  kGlobalNoBarrier,       // kNoBarrier through `out`
};
// `blocks` blocks of 64 threads (two warps) hand values over as `mode`
// says; out[64 * block + t] = the value thread t read.
cudaError_t HandOff(int32_t* out, Handoff mode, int32_t blocks, cudaStream_t stream);

// A launch of `threads` threads in one block (invalid above 1024).
cudaError_t Threads(int32_t* out, int32_t threads, cudaStream_t stream);

}  // namespace tokenfab::cuda_emu::probe

#endif  // TOKENFAB_TESTS_CUDA_EMU_PROBE_KERNELS_H_
