// The CUDA emulator's runtime, as its own parts (the CUDA API in
// runtime_api.cc, the kernel executor, the cuBLASLt and NCCL stand-ins)
// share it. The emulator runs the CUDA backend's own sources on the CPU so
// that their logic is tested where no GPU is: "device" memory is host
// memory, every stream is an OS thread that runs its work in order, events
// and graphs keep CUDA's ordering rules, and kernels run thread by thread
// (executor.cc). It is a test double, not a backend: it says nothing about
// speed, and the name of every emulated device says what it is.
//
// It checks what a GPU would punish later: copies and frees of memory that
// is not the kind or size claimed, work on a destroyed stream or event, a
// launch on another device's stream, synchronous calls while a stream is
// being captured, barriers that not every thread of a block or warp
// reaches. Each refusal returns the error CUDA would and prints why.
//
// Settings (environment): TOKENFAB_CUDA_EMU_DEVICES (default 2; 0 emulates
// a machine without GPUs), TOKENFAB_CUDA_EMU_MEMORY_MB (per device, default
// 4096), TOKENFAB_CUDA_EMU_SMS (multiprocessors, default 132 as an H100),
// TOKENFAB_CUDA_EMU_SHUFFLE (a seed: blocks and threads run in random orders,
// see executor.cc; unset, they run in index order).
#ifndef TOKENFAB_TESTS_CUDA_EMU_EMU_RUNTIME_H_
#define TOKENFAB_TESTS_CUDA_EMU_EMU_RUNTIME_H_

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace tokenfab::cuda_emu {

enum class MemoryKind { kDevice, kPinnedHost };

struct Allocation {
  uintptr_t base = 0;
  size_t bytes = 0;
  int device = 0;
  MemoryKind kind = MemoryKind::kDevice;
};

// The allocation that holds `p`, if any.
std::optional<Allocation> FindAllocation(const void* p);
// Every live allocation, by base; and a count of allocations and frees so
// far, so a copy of the list can tell when it is out of date.
std::vector<Allocation> Allocations();
uint64_t AllocationsChanged();
// Empty when [p, p + bytes) lies inside one allocation of `kind`, else why not.
std::string CheckRange(const void* p, size_t bytes, MemoryKind kind);

// Work on a stream. It runs on the stream's thread after everything enqueued
// before it; a returned error becomes the device's sticky error (as a
// faulting kernel's does) and later work on that device is skipped.
using Work = std::function<cudaError_t()>;

// Enqueues `work` on `stream` as the calling thread names it (0, legacy and
// per-thread handles resolve on the thread's current device); a stream being
// captured records it into the graph instead. Errors are CUDA's: an unknown
// stream, an invalidated capture, the device's sticky error.
cudaError_t Enqueue(cudaStream_t stream, const char* what, Work work);
// The device a stream handle belongs to (for checks before enqueueing).
cudaError_t StreamDevice(cudaStream_t stream, int* device);
// Whether work on `stream` is being recorded into a graph now.
bool IsCapturing(cudaStream_t stream);

// The calling thread's current device and its last error, as the CUDA API
// keeps them; SetLastError records a failed call's result.
int CurrentDevice();
cudaError_t SetLastError(cudaError_t e);

// The largest dynamic shared memory a kernel may use (48 KB unless raised
// with cudaFuncSetAttribute).
size_t MaxDynamicShared(const void* kernel);
// The emulated devices' shared-memory limit per block, opt-in included.
inline constexpr size_t kSharedPerBlock = 48 * 1024;
inline constexpr size_t kSharedPerBlockOptin = 227 * 1024;

// Runs every later launch's blocks and threads in random orders seeded from
// `seed` and the launch's number (counted from this call, so one stream's
// launches repeat their orders under the same seed), or in index order when
// empty. The default comes from TOKENFAB_CUDA_EMU_SHUFFLE.
void SetShuffleSeed(std::optional<uint64_t> seed);
std::optional<uint64_t> ShuffleSeed();

// Prints "tokenfab cuda emulator: <what>" to stderr: the reason behind an
// error the emulator returns, which CUDA itself would not explain.
void Complain(const std::string& what);

}  // namespace tokenfab::cuda_emu

#endif  // TOKENFAB_TESTS_CUDA_EMU_EMU_RUNTIME_H_
