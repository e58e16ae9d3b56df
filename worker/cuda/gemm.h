// The backend's matrix products through cuBLASLt: bf16 inputs, fp32
// accumulation, bf16 or fp32 output. One plan (descriptors and the
// heuristic's algorithm) per shape, made on first use and kept, so steps
// replayed from a CUDA graph find their plans ready.
//
// Used by the engine thread only.
#ifndef TOKENFAB_WORKER_CUDA_GEMM_H_
#define TOKENFAB_WORKER_CUDA_GEMM_H_

#include <cublasLt.h>

#include <cstdint>
#include <memory>
#include <tuple>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "worker/cuda/device_buffer.h"
#include "worker/cuda/kernels.h"

namespace tokenfab::cuda {

class Gemm {
 public:
  static absl::StatusOr<std::unique_ptr<Gemm>> Create(size_t workspace_bytes = 32u << 20);
  ~Gemm();

  // y[n][out] = x[n][in] . w[out][in]^T, plus y's old value when
  // `accumulate`. x and w are bf16; y is bf16 (CUDA_R_16BF) or float
  // (CUDA_R_32F). Row-major everywhere, as the weights are stored.
  absl::Status Run(const bf16* x, const bf16* w, int64_t n, int64_t in, int64_t out, void* y,
                   cudaDataType_t y_type, bool accumulate, cudaStream_t stream);

 private:
  struct Plan;
  using Key = std::tuple<int64_t, int64_t, int64_t, int, bool>;
  Gemm() = default;
  absl::StatusOr<Plan*> PlanFor(const Key& key);

  cublasLtHandle_t handle_ = nullptr;
  DeviceBuffer<uint8_t> workspace_;
  absl::flat_hash_map<Key, std::unique_ptr<Plan>> plans_;
};

}  // namespace tokenfab::cuda

#endif  // TOKENFAB_WORKER_CUDA_GEMM_H_
