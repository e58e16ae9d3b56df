// The emulator's race check: what compute-sanitizer's racecheck tool reports
// on a GPU, found on the CPU, for shared memory and, within a block, for
// global memory. Two accesses by different threads of a block to the same
// byte, at least one a write (and not both atomic), race unless a barrier
// orders them: a __syncthreads between them, or a __syncwarp of the whole
// warp when both threads are lanes of one warp. Shuffles, votes and
// wmma::mma_sync bring a warp's lanes together but order no memory (CUDA's
// programming guide says so), so they do not count. A __syncwarp whose mask
// leaves out a lane of the warp is taken to order nothing: a kernel that
// relies on one may get a false report. Accesses of different blocks are
// not compared (blocks run one at a time here, each with a fresh shadow):
// two blocks writing one output element go unreported.
//
// The check needs every load and store of the kernel: the racecheck build
// of the kernels (tokenfab_emu_kernels(... RACECHECK) in CMakeLists.txt) is
// compiled with GCC's ThreadSanitizer instrumentation (-fsanitize=thread),
// which calls __tsan_read4, __tsan_write8, __tsan_atomic32_fetch_add and
// the like before each access. racecheck.cc implements those entry points
// (no ThreadSanitizer runtime is linked): an access outside the block's
// shared memory and the emulated devices' allocations (the thread's stack,
// the kernel's parameters) returns at once; one inside is checked against
// the byte's shadow, which keeps who read and wrote it since the last
// barrier. Because nothing here depends on the order in which threads run,
// a race is found even where the emulator's schedule hides its effect. The
// first race of a block fails the launch (cudaErrorLaunchFailure) with both
// threads, what each did and where (file:line, through addr2line).
//
// Kernels built without the instrumentation run as before; the hooks below
// then cost a few stores per block and per barrier.
#ifndef TOKENFAB_TESTS_CUDA_EMU_RACECHECK_H_
#define TOKENFAB_TESTS_CUDA_EMU_RACECHECK_H_

#include <cstddef>
#include <string>

namespace tokenfab::cuda_emu::race {

// Called by the executor (executor.cc) on the OS thread that runs a block.
// A block starts: `dynamic_shared` is its dynamic shared memory (may be
// null), `warps` its number of warps.
void BeginBlock(const void* dynamic_shared, size_t bytes, int warps);
// A static __shared__ variable of the block (FreshShared), by name.
void AddStatic(const void* p, size_t bytes, const char* name);
// The CUDA thread about to run (its linear index in the block), or -1.
void SetThread(int tid);
// Every thread of the block passed a __syncthreads.
void BlockBarrier();
// Every lane of warp `warp` passed a __syncwarp.
void WarpBarrier(int warp);
// The block is over.
void EndBlock();

// Implemented by the executor: fails the running block with `why` (the
// first failure of a block is the one reported).
void FailBlock(const std::string& why);

}  // namespace tokenfab::cuda_emu::race

#endif  // TOKENFAB_TESTS_CUDA_EMU_RACECHECK_H_
