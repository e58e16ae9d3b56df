// CUDA and cuBLAS return codes as absl::Status, naming the operation.
#ifndef TOKENFAB_WORKER_CUDA_CUDA_STATUS_H_
#define TOKENFAB_WORKER_CUDA_CUDA_STATUS_H_

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include "absl/status/status.h"
#include "common/status_macros.h"
#include "common/strings.h"

namespace tokenfab::cuda {

inline absl::Status CudaStatus(cudaError_t e, const char* op) {
  if (e == cudaSuccess) return absl::OkStatus();
  const std::string msg = StrCat(op, ": ", cudaGetErrorName(e), " (", cudaGetErrorString(e), ")");
  if (e == cudaErrorMemoryAllocation) return absl::ResourceExhaustedError(msg);
  if (e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver || e == cudaErrorInvalidDevice) {
    return absl::UnavailableError(msg);
  }
  return absl::InternalError(msg);
}

inline absl::Status CublasStatus(cublasStatus_t s, const char* op) {
  if (s == CUBLAS_STATUS_SUCCESS) return absl::OkStatus();
  return absl::InternalError(StrCat(op, ": cuBLAS status ", static_cast<int>(s)));
}

}  // namespace tokenfab::cuda

#define CUDA_RETURN_IF_ERROR(expr) RETURN_IF_ERROR(::tokenfab::cuda::CudaStatus((expr), #expr))
#define CUBLAS_RETURN_IF_ERROR(expr) RETURN_IF_ERROR(::tokenfab::cuda::CublasStatus((expr), #expr))

#endif  // TOKENFAB_WORKER_CUDA_CUDA_STATUS_H_
