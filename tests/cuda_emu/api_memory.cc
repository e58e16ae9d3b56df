// The CUDA emulator's memory API. Device and pinned memory are host memory
// from posix_memalign (256-byte aligned, exact size, so AddressSanitizer
// sees an overrun past the end), registered so that copies, sets and frees
// can be checked against what was allocated. Fresh device memory is filled
// with 0xff bytes (NaN as floats) so that a kernel that reads what nobody
// wrote gets garbage, as on a GPU, rather than zeros.
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "tests/cuda_emu/state.h"

using namespace tokenfab::cuda_emu;  // NOLINT: the C API is global

namespace tokenfab::cuda_emu {
namespace {

std::string Hex(const void* p) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%p", p);
  return buf;
}

const Allocation* FindLocked(uintptr_t p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(R().mu) {
  auto& all = R().allocations;
  auto it = all.upper_bound(p);
  if (it == all.begin()) return nullptr;
  --it;
  const Allocation& a = it->second;
  return p < a.base + std::max<size_t>(a.bytes, 1) ? &a : nullptr;
}

std::string CheckRangeLocked(const void* p, size_t bytes, MemoryKind kind)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(R().mu) {
  const char* want = kind == MemoryKind::kDevice ? "device" : "pinned host";
  const Allocation* a = FindLocked(reinterpret_cast<uintptr_t>(p));
  if (a == nullptr || a->kind != kind) {
    return Hex(p) + " is not " + want + " memory";
  }
  const uintptr_t end = reinterpret_cast<uintptr_t>(p) + bytes;
  if (end > a->base + a->bytes) {
    return std::to_string(bytes) + " bytes at " + Hex(p) + " run " +
           std::to_string(end - (a->base + a->bytes)) + " bytes past the end of a " +
           std::to_string(a->bytes) + "-byte " + want + " allocation";
  }
  return "";
}

bool IsDeviceLocked(const void* p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(R().mu) {
  const Allocation* a = FindLocked(reinterpret_cast<uintptr_t>(p));
  return a != nullptr && a->kind == MemoryKind::kDevice;
}
bool IsPinnedLocked(const void* p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(R().mu) {
  const Allocation* a = FindLocked(reinterpret_cast<uintptr_t>(p));
  return a != nullptr && a->kind == MemoryKind::kPinnedHost;
}

cudaError_t AllocateLocked(void** out, size_t bytes, int device, MemoryKind kind, const char* api)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(R().mu) {
  *out = nullptr;
  if (bytes == 0) return cudaSuccess;
  if (kind == MemoryKind::kDevice) {
    DeviceState& d = R().devices[device];
    if (bytes > d.total - d.used) {
      Complain(std::string(api) + ": " + std::to_string(bytes) + " bytes requested, " +
               std::to_string(d.total - d.used) + " free on the emulated device " +
               std::to_string(device) + " (TOKENFAB_CUDA_EMU_MEMORY_MB sets its size)");
      return cudaErrorMemoryAllocation;
    }
  }
  void* p = nullptr;
  if (posix_memalign(&p, 256, bytes) != 0) return cudaErrorMemoryAllocation;
  if (kind == MemoryKind::kDevice) {
    std::memset(p, 0xff, bytes);
    R().devices[device].used += bytes;
  }
  const uintptr_t base = reinterpret_cast<uintptr_t>(p);
  R().allocations[base] = {base, bytes, device, kind};
  ++R().allocations_changed;
  *out = p;
  return cudaSuccess;
}

void ReleaseLocked(uintptr_t base) ABSL_EXCLUSIVE_LOCKS_REQUIRED(R().mu) {
  auto it = R().allocations.find(base);
  if (it == R().allocations.end()) return;
  if (it->second.kind == MemoryKind::kDevice)
    R().devices[it->second.device].used -= it->second.bytes;
  R().allocations.erase(it);
  ++R().allocations_changed;
  std::free(reinterpret_cast<void*>(base));
}

// Which sides of a copy are device memory, as `kind` claims and the
// registry confirms; empty on success, else why not.
std::string CheckCopyLocked(void* dst, const void* src, size_t n, cudaMemcpyKind kind)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(R().mu) {
  bool dst_dev, src_dev;
  switch (kind) {
    case cudaMemcpyHostToDevice:
      dst_dev = true, src_dev = false;
      break;
    case cudaMemcpyDeviceToHost:
      dst_dev = false, src_dev = true;
      break;
    case cudaMemcpyDeviceToDevice:
      dst_dev = true, src_dev = true;
      break;
    case cudaMemcpyHostToHost:
      dst_dev = false, src_dev = false;
      break;
    case cudaMemcpyDefault:
      dst_dev = IsDeviceLocked(dst);
      src_dev = IsDeviceLocked(src);
      break;
    default:
      return "an unknown copy direction";
  }
  if (dst_dev) {
    if (std::string why = CheckRangeLocked(dst, n, MemoryKind::kDevice); !why.empty()) {
      return "destination: " + why;
    }
  } else if (IsDeviceLocked(dst)) {
    return "destination " + Hex(dst) + " is device memory but the copy's direction says host";
  }
  if (src_dev) {
    if (std::string why = CheckRangeLocked(src, n, MemoryKind::kDevice); !why.empty()) {
      return "source: " + why;
    }
  } else if (IsDeviceLocked(src)) {
    return "source " + Hex(src) + " is device memory but the copy's direction says host";
  }
  return "";
}

// The start of a copy or set: a device, and no capture a synchronous call
// would break.
cudaError_t StartLocked(bool sync, const char* api) ABSL_EXCLUSIVE_LOCKS_REQUIRED(R().mu) {
  if (!ValidDeviceLocked(CurrentDevice())) return cudaErrorNoDevice;
  return sync ? CheckNotCapturingLocked(api) : cudaSuccess;
}

// The end: the work enqueued, and waited for when `wait`.
cudaError_t FinishLocked(const StreamRef& s, const char* api, Work work, bool wait)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(R().mu) {
  if (const cudaError_t e = EnqueueLocked(s, api, std::move(work)); e != cudaSuccess) return e;
  if (!wait) return cudaSuccess;
  DrainLocked(s);
  return StickyLocked(s->device);
}

// A copy on `stream` (the legacy stream and waited for when `sync`). Host
// memory that is not pinned is copied as CUDA does: the source is taken at
// the call, and a copy into it returns only when done.
cudaError_t Copy(void* dst, const void* src, size_t n, cudaMemcpyKind kind, cudaStream_t stream,
                 bool sync, const char* api) {
  absl::MutexLock lock(&R().mu);
  if (const cudaError_t e = StartLocked(sync, api); e != cudaSuccess) return e;
  if (n == 0) return cudaSuccess;
  if (dst == nullptr || src == nullptr) return cudaErrorInvalidValue;
  if (std::string why = CheckCopyLocked(dst, src, n, kind); !why.empty()) {
    Complain(std::string(api) + " of " + std::to_string(n) + " bytes: " + why);
    return cudaErrorInvalidValue;
  }
  StreamRef s = ResolveLocked(sync ? nullptr : stream, CurrentDevice());
  if (s == nullptr) return cudaErrorInvalidResourceHandle;
  const bool src_pageable = !IsDeviceLocked(src) && !IsPinnedLocked(src);
  const bool dst_pageable = !IsDeviceLocked(dst) && !IsPinnedLocked(dst);
  const bool wait = sync || dst_pageable;
  if ((src_pageable || dst_pageable) && s->capture != nullptr) {
    InvalidateCaptureLocked(*s, std::string(api) + " with pageable host memory");
    return cudaErrorStreamCaptureUnsupported;
  }
  Work work;
  if (src_pageable && !dst_pageable) {
    auto staged = std::make_shared<std::vector<unsigned char>>(
        static_cast<const unsigned char*>(src), static_cast<const unsigned char*>(src) + n);
    work = [dst, staged] {
      std::memcpy(dst, staged->data(), staged->size());
      return cudaSuccess;
    };
  } else {
    work = [dst, src, n] {
      std::memmove(dst, src, n);
      return cudaSuccess;
    };
  }
  return FinishLocked(s, api, std::move(work), wait);
}

cudaError_t Set(void* dst, int value, size_t n, cudaStream_t stream, bool sync, const char* api) {
  absl::MutexLock lock(&R().mu);
  if (const cudaError_t e = StartLocked(sync, api); e != cudaSuccess) return e;
  if (n == 0) return cudaSuccess;
  if (std::string why = CheckRangeLocked(dst, n, MemoryKind::kDevice); !why.empty()) {
    Complain(std::string(api) + ": " + why);
    return cudaErrorInvalidValue;
  }
  StreamRef s = ResolveLocked(sync ? nullptr : stream, CurrentDevice());
  if (s == nullptr) return cudaErrorInvalidResourceHandle;
  Work work = [dst, value, n] {
    std::memset(dst, value, n);
    return cudaSuccess;
  };
  return FinishLocked(s, api, std::move(work), sync);
}

}  // namespace

std::optional<Allocation> FindAllocation(const void* p) {
  absl::MutexLock lock(&R().mu);
  const Allocation* a = FindLocked(reinterpret_cast<uintptr_t>(p));
  if (a == nullptr) return std::nullopt;
  return *a;
}

uint64_t AllocationsChanged() { return R().allocations_changed.load(); }

std::vector<Allocation> Allocations() {
  absl::MutexLock lock(&R().mu);
  std::vector<Allocation> all;
  all.reserve(R().allocations.size());
  for (const auto& [base, a] : R().allocations) all.push_back(a);
  return all;
}

std::string CheckRange(const void* p, size_t bytes, MemoryKind kind) {
  absl::MutexLock lock(&R().mu);
  return CheckRangeLocked(p, bytes, kind);
}

}  // namespace tokenfab::cuda_emu

cudaError_t cudaMalloc(void** p, size_t bytes) {
  if (p == nullptr) return Ret(cudaErrorInvalidValue);
  absl::MutexLock lock(&R().mu);
  const int device = CurrentDevice();
  if (!ValidDeviceLocked(device)) return Ret(cudaErrorNoDevice);
  if (const cudaError_t e = CheckNotCapturingLocked("cudaMalloc"); e != cudaSuccess) return Ret(e);
  return Ret(AllocateLocked(p, bytes, device, MemoryKind::kDevice, "cudaMalloc"));
}

// cudaFree waits for all work on the device first, as CUDA's does.
cudaError_t cudaFree(void* p) {
  if (p == nullptr) return cudaSuccess;
  absl::MutexLock lock(&R().mu);
  if (const cudaError_t e = CheckNotCapturingLocked("cudaFree"); e != cudaSuccess) return Ret(e);
  const uintptr_t base = reinterpret_cast<uintptr_t>(p);
  auto it = R().allocations.find(base);
  if (it == R().allocations.end() || it->second.kind != MemoryKind::kDevice ||
      R().freeing.contains(base)) {
    Complain("cudaFree(" + Hex(p) + "): not the start of a live device allocation");
    return Ret(cudaErrorInvalidValue);
  }
  DrainDeviceLocked(it->second.device);
  ReleaseLocked(base);
  return cudaSuccess;
}

cudaError_t cudaMallocAsync(void** p, size_t bytes, cudaStream_t stream) {
  if (p == nullptr) return Ret(cudaErrorInvalidValue);
  absl::MutexLock lock(&R().mu);
  StreamRef s = ResolveLocked(stream, CurrentDevice());
  if (s == nullptr) return Ret(cudaErrorInvalidResourceHandle);
  if (s->capture != nullptr) {
    InvalidateCaptureLocked(*s, "cudaMallocAsync (graph memory nodes are not emulated)");
    return Ret(cudaErrorStreamCaptureUnsupported);
  }
  return Ret(AllocateLocked(p, bytes, s->device, MemoryKind::kDevice, "cudaMallocAsync"));
}

cudaError_t cudaFreeAsync(void* p, cudaStream_t stream) {
  if (p == nullptr) return cudaSuccess;
  absl::MutexLock lock(&R().mu);
  StreamRef s = ResolveLocked(stream, CurrentDevice());
  if (s == nullptr) return Ret(cudaErrorInvalidResourceHandle);
  if (s->capture != nullptr) {
    InvalidateCaptureLocked(*s, "cudaFreeAsync (graph memory nodes are not emulated)");
    return Ret(cudaErrorStreamCaptureUnsupported);
  }
  const uintptr_t base = reinterpret_cast<uintptr_t>(p);
  auto it = R().allocations.find(base);
  if (it == R().allocations.end() || it->second.kind != MemoryKind::kDevice ||
      R().freeing.contains(base)) {
    Complain("cudaFreeAsync(" + Hex(p) + "): not the start of a live device allocation");
    return Ret(cudaErrorInvalidValue);
  }
  R().freeing.insert(base);
  return Ret(EnqueueLocked(s, "cudaFreeAsync", [base] {
    absl::MutexLock lock(&R().mu);
    R().freeing.erase(base);
    ReleaseLocked(base);
    return cudaSuccess;
  }));
}

cudaError_t cudaMallocHost(void** p, size_t bytes) {
  if (p == nullptr) return Ret(cudaErrorInvalidValue);
  absl::MutexLock lock(&R().mu);
  if (const cudaError_t e = CheckNotCapturingLocked("cudaMallocHost"); e != cudaSuccess) {
    return Ret(e);
  }
  return Ret(AllocateLocked(p, bytes, CurrentDevice(), MemoryKind::kPinnedHost, "cudaMallocHost"));
}

cudaError_t cudaHostAlloc(void** p, size_t bytes, unsigned int flags) {
  return cudaMallocHost(p, bytes);
}

// cudaFreeHost waits for the device, as CUDA's does.
cudaError_t cudaFreeHost(void* p) {
  if (p == nullptr) return cudaSuccess;
  absl::MutexLock lock(&R().mu);
  if (const cudaError_t e = CheckNotCapturingLocked("cudaFreeHost"); e != cudaSuccess) {
    return Ret(e);
  }
  const uintptr_t base = reinterpret_cast<uintptr_t>(p);
  auto it = R().allocations.find(base);
  if (it == R().allocations.end() || it->second.kind != MemoryKind::kPinnedHost) {
    Complain("cudaFreeHost(" + Hex(p) + "): not the start of a live pinned allocation");
    return Ret(cudaErrorInvalidValue);
  }
  for (int d = 0; d < static_cast<int>(R().devices.size()); ++d) DrainDeviceLocked(d);
  ReleaseLocked(base);
  return cudaSuccess;
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t n, cudaMemcpyKind kind) {
  return Ret(Copy(dst, src, n, kind, nullptr, /*sync=*/true, "cudaMemcpy"));
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t n, cudaMemcpyKind kind,
                            cudaStream_t stream) {
  return Ret(Copy(dst, src, n, kind, stream, /*sync=*/false, "cudaMemcpyAsync"));
}

cudaError_t cudaMemset(void* dst, int value, size_t n) {
  return Ret(Set(dst, value, n, nullptr, /*sync=*/true, "cudaMemset"));
}

cudaError_t cudaMemsetAsync(void* dst, int value, size_t n, cudaStream_t stream) {
  return Ret(Set(dst, value, n, stream, /*sync=*/false, "cudaMemsetAsync"));
}

cudaError_t cudaPointerGetAttributes(cudaPointerAttributes* attr, const void* p) {
  if (attr == nullptr) return Ret(cudaErrorInvalidValue);
  *attr = cudaPointerAttributes{};
  std::optional<Allocation> a = FindAllocation(p);
  attr->type = a == std::nullopt                ? cudaMemoryTypeUnregistered
               : a->kind == MemoryKind::kDevice ? cudaMemoryTypeDevice
                                                : cudaMemoryTypeHost;
  attr->device = a == std::nullopt ? -2 : a->device;
  attr->devicePointer =
      a != std::nullopt && a->kind == MemoryKind::kDevice ? const_cast<void*>(p) : nullptr;
  attr->hostPointer =
      a != std::nullopt && a->kind == MemoryKind::kPinnedHost ? const_cast<void*>(p) : nullptr;
  return cudaSuccess;
}
