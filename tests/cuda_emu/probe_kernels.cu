#include "tests/cuda_emu/probe_kernels.h"

namespace tokenfab::cuda_emu::probe {
namespace {

__global__ void WarpOpsKernel(const int32_t* in, int32_t* out, int32_t n) {
  const int t = threadIdx.x, lane = t & 31;
  const int32_t v = in[t];
  int32_t sum = v;
  for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
  int32_t scan = v;
  for (int o = 1; o < 32; o <<= 1) {
    const int32_t up = __shfl_up_sync(0xffffffffu, scan, o);
    if (lane >= o) scan += up;
  }
  out[5 * t] = sum;
  out[5 * t + 1] = scan;
  out[5 * t + 2] = __shfl_down_sync(0xffffffffu, v, 1);
  out[5 * t + 3] = __shfl_sync(0xffffffffu, v, 0);
  out[5 * t + 4] = static_cast<int32_t>(__ballot_sync(0xffffffffu, v & 1));
}

__global__ void BlockReverseKernel(const int32_t* in, int32_t* out, int32_t n) {
  extern __shared__ int32_t buf[];
  const int t = threadIdx.x;
  buf[t] = in[t];
  __syncthreads();
  out[t] = buf[n - 1 - t];
}

__global__ void LargeSharedKernel(int32_t* out, size_t bytes) {
  extern __shared__ unsigned char big[];
  big[bytes - 1] = 1;
  if (threadIdx.x == 0) out[0] = static_cast<int32_t>(bytes);
}

__global__ void AtomicCountKernel(int32_t* counter) { atomicAdd(counter, 1); }

__global__ void AddOneKernel(float* x, int32_t n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) x[i] += 1.0f;
}

__global__ void DivergentSyncThreadsKernel(int32_t* out) {
  // Lanes 0-15 of warp 0 wait for the block; lanes 16-31 wait for the
  // whole warp, those 16 included: neither barrier can complete.
  if (threadIdx.x < 16) {
    __syncthreads();
  } else if (threadIdx.x < 32) {
    __syncwarp();
  }
  out[threadIdx.x] = 1;
}

__global__ void DivergentShuffleKernel(int32_t* out) {
  int32_t v = threadIdx.x;
  if ((threadIdx.x & 1) == 0) v = __shfl_xor_sync(0xffffffffu, v, 1);
  out[threadIdx.x] = v;
}

__global__ void ThreadsKernel(int32_t* out) { out[threadIdx.x] = threadIdx.x; }

__global__ void LastWriterKernel(int32_t* out) {
  out[0] = blockIdx.x * blockDim.x + threadIdx.x;
  out[1 + blockIdx.x] = threadIdx.x;
}

// The marker comments name the lines racecheck_test.cc expects in reports.
__global__ void HandoffKernel(int32_t* out, Handoff mode) {
  extern __shared__ int32_t buf[];
  __shared__ int32_t slots[64];
  __shared__ int32_t counter;
  const int t = threadIdx.x;
  int32_t v = 0;
  switch (mode) {
    case Handoff::kSyncThreads:
      buf[t] = t;
      __syncthreads();
      v = buf[63 - t];
      break;
    case Handoff::kNoBarrier:
      buf[t] = t;  // racecheck: no-barrier write
      v = buf[63 - t];  // racecheck: no-barrier read
      break;
    case Handoff::kSyncWarp:
      buf[t] = t;
      __syncwarp();
      v = buf[t ^ 1];
      break;
    case Handoff::kSyncWarpAcrossWarps:
      buf[t] = t;
      __syncwarp();
      v = buf[63 - t];
      break;
    case Handoff::kShuffle:
      buf[t] = t;  // racecheck: shuffle write
      v = __shfl_xor_sync(0xffffffffu, t, 1);
      v += buf[t ^ 1];  // racecheck: shuffle read
      break;
    case Handoff::kOwnSlot:
      buf[t] = t;
      v = buf[t];
      break;
    case Handoff::kWriteAfterRead:
      buf[t] = t;
      __syncthreads();
      v = buf[t ^ 1];
      buf[t] = v;
      break;
    case Handoff::kAtomicsThenSync:
      if (t == 0) counter = 0;
      __syncthreads();
      atomicAdd(&counter, 1);
      __syncthreads();
      v = counter;
      break;
    case Handoff::kAtomicsThenRead:
      if (t == 0) counter = 0;
      __syncthreads();
      atomicAdd(&counter, 1);
      v = counter;
      break;
    case Handoff::kStaticNoBarrier:
      slots[t] = t;
      v = slots[63 - t];
      break;
    case Handoff::kGlobalSyncThreads:
      out[blockIdx.x * blockDim.x + t] = t;
      __syncthreads();
      v = out[blockIdx.x * blockDim.x + 63 - t];
      __syncthreads();
      break;
    case Handoff::kGlobalNoBarrier:
      out[blockIdx.x * blockDim.x + t] = t;  // racecheck: global write
      v = out[blockIdx.x * blockDim.x + 63 - t];  // racecheck: global read
      __syncthreads();
      break;
  }
  out[blockIdx.x * blockDim.x + t] = v;
}

}  // namespace

cudaError_t HandOff(int32_t* out, Handoff mode, int32_t blocks, cudaStream_t stream) {
  HandoffKernel<<<blocks, 64, 64 * sizeof(int32_t), stream>>>(out, mode);
  return cudaGetLastError();
}

cudaError_t WarpOps(const int32_t* in, int32_t* out, int32_t n, cudaStream_t stream) {
  WarpOpsKernel<<<1, n, 0, stream>>>(in, out, n);
  return cudaGetLastError();
}

cudaError_t BlockReverse(const int32_t* in, int32_t* out, int32_t n, cudaStream_t stream) {
  BlockReverseKernel<<<1, n, sizeof(int32_t) * n, stream>>>(in, out, n);
  return cudaGetLastError();
}

cudaError_t LargeShared(int32_t* out, size_t bytes, cudaStream_t stream) {
  LargeSharedKernel<<<1, 32, bytes, stream>>>(out, bytes);
  return cudaGetLastError();
}

cudaError_t AllowLargeShared(int32_t bytes) {
  return cudaFuncSetAttribute(LargeSharedKernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                              bytes);
}

cudaError_t AtomicCount(int32_t* counter, int32_t blocks, cudaStream_t stream) {
  AtomicCountKernel<<<blocks, 256, 0, stream>>>(counter);
  return cudaGetLastError();
}

cudaError_t AddOne(float* x, int32_t n, cudaStream_t stream) {
  AddOneKernel<<<(n + 127) / 128, 128, 0, stream>>>(x, n);
  return cudaGetLastError();
}

cudaError_t DivergentSyncThreads(int32_t* out, cudaStream_t stream) {
  DivergentSyncThreadsKernel<<<1, 64, 0, stream>>>(out);
  return cudaGetLastError();
}

cudaError_t DivergentShuffle(int32_t* out, cudaStream_t stream) {
  DivergentShuffleKernel<<<1, 32, 0, stream>>>(out);
  return cudaGetLastError();
}

cudaError_t LastWriter(int32_t* out, int32_t blocks, int32_t threads, cudaStream_t stream) {
  LastWriterKernel<<<blocks, threads, 0, stream>>>(out);
  return cudaGetLastError();
}

cudaError_t Threads(int32_t* out, int32_t threads, cudaStream_t stream) {
  ThreadsKernel<<<1, threads, 0, stream>>>(out);
  return cudaGetLastError();
}

}  // namespace tokenfab::cuda_emu::probe
