// The CUDA emulator's device, error and function-attribute API.
#include <cstdio>

#include "tests/cuda_emu/state.h"

using namespace tokenfab::cuda_emu;  // NOLINT: the C API is global

namespace {

const char* ErrorName(cudaError_t e) {
  switch (e) {
#define TOKENFAB_EMU_ERROR(name) \
  case name:                     \
    return #name;
    TOKENFAB_EMU_ERROR(cudaSuccess)
    TOKENFAB_EMU_ERROR(cudaErrorInvalidValue)
    TOKENFAB_EMU_ERROR(cudaErrorMemoryAllocation)
    TOKENFAB_EMU_ERROR(cudaErrorInitializationError)
    TOKENFAB_EMU_ERROR(cudaErrorInvalidConfiguration)
    TOKENFAB_EMU_ERROR(cudaErrorInvalidDevice)
    TOKENFAB_EMU_ERROR(cudaErrorInvalidDevicePointer)
    TOKENFAB_EMU_ERROR(cudaErrorInvalidMemcpyDirection)
    TOKENFAB_EMU_ERROR(cudaErrorInsufficientDriver)
    TOKENFAB_EMU_ERROR(cudaErrorNoDevice)
    TOKENFAB_EMU_ERROR(cudaErrorInvalidResourceHandle)
    TOKENFAB_EMU_ERROR(cudaErrorNotReady)
    TOKENFAB_EMU_ERROR(cudaErrorIllegalAddress)
    TOKENFAB_EMU_ERROR(cudaErrorLaunchFailure)
    TOKENFAB_EMU_ERROR(cudaErrorLaunchOutOfResources)
    TOKENFAB_EMU_ERROR(cudaErrorNotSupported)
    TOKENFAB_EMU_ERROR(cudaErrorStreamCaptureUnsupported)
    TOKENFAB_EMU_ERROR(cudaErrorStreamCaptureInvalidated)
    TOKENFAB_EMU_ERROR(cudaErrorStreamCaptureWrongThread)
    TOKENFAB_EMU_ERROR(cudaErrorIllegalState)
    TOKENFAB_EMU_ERROR(cudaErrorUnknown)
#undef TOKENFAB_EMU_ERROR
    default:
      return nullptr;
  }
}

const char* ErrorText(cudaError_t e) {
  switch (e) {
    case cudaSuccess:
      return "no error";
    case cudaErrorInvalidValue:
      return "invalid argument";
    case cudaErrorMemoryAllocation:
      return "out of memory";
    case cudaErrorInvalidConfiguration:
      return "invalid configuration argument";
    case cudaErrorInvalidDevice:
      return "invalid device ordinal";
    case cudaErrorNoDevice:
      return "no CUDA-capable device is detected";
    case cudaErrorInvalidResourceHandle:
      return "invalid resource handle";
    case cudaErrorNotReady:
      return "device not ready";
    case cudaErrorIllegalAddress:
      return "an illegal memory access was encountered";
    case cudaErrorLaunchFailure:
      return "unspecified launch failure";
    case cudaErrorStreamCaptureUnsupported:
      return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated:
      return "operation failed due to a previous error during capture";
    case cudaErrorIllegalState:
      return "the operation cannot be performed in the present state";
    default:
      return "an error of the CUDA emulator";
  }
}

}  // namespace

cudaError_t cudaGetDeviceCount(int* count) {
  if (count == nullptr) return Ret(cudaErrorInvalidValue);
  absl::MutexLock lock(&R().mu);
  *count = static_cast<int>(R().devices.size());
  return Ret(*count == 0 ? cudaErrorNoDevice : cudaSuccess);
}

cudaError_t cudaSetDevice(int device) {
  {
    absl::MutexLock lock(&R().mu);
    if (R().devices.empty()) return Ret(cudaErrorNoDevice);
    if (!ValidDeviceLocked(device)) return Ret(cudaErrorInvalidDevice);
  }
  SetCurrentDevice(device);
  return cudaSuccess;
}

cudaError_t cudaGetDevice(int* device) {
  if (device == nullptr) return Ret(cudaErrorInvalidValue);
  absl::MutexLock lock(&R().mu);
  if (R().devices.empty()) return Ret(cudaErrorNoDevice);
  *device = CurrentDevice();
  return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  if (prop == nullptr) return Ret(cudaErrorInvalidValue);
  absl::MutexLock lock(&R().mu);
  if (!ValidDeviceLocked(device)) return Ret(cudaErrorInvalidDevice);
  *prop = R().devices[device].prop;
  return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
  if (value == nullptr) return Ret(cudaErrorInvalidValue);
  absl::MutexLock lock(&R().mu);
  if (!ValidDeviceLocked(device)) return Ret(cudaErrorInvalidDevice);
  const cudaDeviceProp& p = R().devices[device].prop;
  switch (attr) {
    case cudaDevAttrMaxSharedMemoryPerBlockOptin:
      *value = static_cast<int>(p.sharedMemPerBlockOptin);
      break;
    case cudaDevAttrMaxSharedMemoryPerBlock:
      *value = static_cast<int>(p.sharedMemPerBlock);
      break;
    case cudaDevAttrMultiProcessorCount:
      *value = p.multiProcessorCount;
      break;
    case cudaDevAttrComputeCapabilityMajor:
      *value = p.major;
      break;
    case cudaDevAttrComputeCapabilityMinor:
      *value = p.minor;
      break;
    case cudaDevAttrMaxThreadsPerBlock:
      *value = p.maxThreadsPerBlock;
      break;
    case cudaDevAttrWarpSize:
      *value = p.warpSize;
      break;
    case cudaDevAttrMaxBlockDimX:
      *value = p.maxThreadsDim[0];
      break;
    case cudaDevAttrMaxGridDimX:
      *value = p.maxGridSize[0];
      break;
    case cudaDevAttrMaxGridDimY:
      *value = p.maxGridSize[1];
      break;
    case cudaDevAttrL2CacheSize:
      *value = p.l2CacheSize;
      break;
    case cudaDevAttrMemoryPoolsSupported:
      *value = 1;
      break;
    case cudaDevAttrUnifiedAddressing:
      *value = 1;
      break;
    default:
      Complain("cudaDeviceGetAttribute: attribute " + std::to_string(static_cast<int>(attr)) +
               " is not emulated");
      return Ret(cudaErrorNotSupported);
  }
  return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  if (free_bytes == nullptr || total_bytes == nullptr) return Ret(cudaErrorInvalidValue);
  absl::MutexLock lock(&R().mu);
  const int d = CurrentDevice();
  if (!ValidDeviceLocked(d)) return Ret(cudaErrorNoDevice);
  *total_bytes = R().devices[d].total;
  *free_bytes = R().devices[d].total - R().devices[d].used;
  return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize() {
  absl::MutexLock lock(&R().mu);
  const int d = CurrentDevice();
  if (!ValidDeviceLocked(d)) return Ret(cudaErrorNoDevice);
  if (const cudaError_t e = CheckNotCapturingLocked("cudaDeviceSynchronize"); e != cudaSuccess) {
    return Ret(e);
  }
  DrainDeviceLocked(d);
  return Ret(StickyLocked(d));
}

cudaError_t cudaGetLastError() { return TakeLastError(/*reset=*/true); }
cudaError_t cudaPeekAtLastError() { return TakeLastError(/*reset=*/false); }

const char* cudaGetErrorName(cudaError_t e) {
  const char* name = ErrorName(e);
  return name != nullptr ? name : "cudaErrorUnknown (not emulated)";
}
const char* cudaGetErrorString(cudaError_t e) { return ErrorText(e); }

cudaError_t cudaDriverGetVersion(int* version) {
  if (version == nullptr) return Ret(cudaErrorInvalidValue);
  *version = CUDART_VERSION;
  return cudaSuccess;
}
cudaError_t cudaRuntimeGetVersion(int* version) { return cudaDriverGetVersion(version); }

cudaError_t cudaFuncSetAttribute(const void* func, cudaFuncAttribute attr, int value) {
  if (func == nullptr) return Ret(cudaErrorInvalidDeviceFunction);
  if (attr == cudaFuncAttributePreferredSharedMemoryCarveout) return cudaSuccess;
  if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize) {
    Complain("cudaFuncSetAttribute: attribute " + std::to_string(static_cast<int>(attr)) +
             " is not emulated");
    return Ret(cudaErrorNotSupported);
  }
  if (value < 0 || static_cast<size_t>(value) > kSharedPerBlockOptin) {
    Complain("cudaFuncSetAttribute: " + std::to_string(value) +
             " bytes of dynamic shared memory exceed the opt-in limit of " +
             std::to_string(kSharedPerBlockOptin));
    return Ret(cudaErrorInvalidValue);
  }
  absl::MutexLock lock(&R().mu);
  R().max_dynamic_shared[func] = static_cast<size_t>(value);
  return cudaSuccess;
}

// Static shared memory is not known to the emulator (its kernels' __shared__
// variables are host statics): sharedSizeBytes is 0.
cudaError_t cudaFuncGetAttributes(cudaFuncAttributes* attr, const void* func) {
  if (attr == nullptr || func == nullptr) return Ret(cudaErrorInvalidValue);
  *attr = cudaFuncAttributes{};
  attr->maxThreadsPerBlock = 1024;
  attr->maxDynamicSharedSizeBytes = static_cast<int>(MaxDynamicShared(func));
  attr->ptxVersion = 90;
  attr->binaryVersion = 90;
  return cudaSuccess;
}
