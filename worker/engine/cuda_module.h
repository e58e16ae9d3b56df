// Finds and loads the CUDA backend, which lives in its own shared module
// (libtokenfab_cuda.so, built where nvcc exists) so that one tokenfab binary
// starts on machines without the CUDA runtime: only `--device cuda:N` loads
// it. Errors say what is missing: the module (a build without nvcc), the
// CUDA runtime or cuBLAS libraries, a driver, or the GPU itself.
#ifndef TOKENFAB_WORKER_ENGINE_CUDA_MODULE_H_
#define TOKENFAB_WORKER_ENGINE_CUDA_MODULE_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "worker/engine/backend.h"
#include "worker/model/model_weights.h"
#include "worker/transport/kv_transport.h"

namespace tokenfab {

struct CudaBackendOptions {
  int32_t device = 0;
  // KV blocks; 0: as many as `kv_cache_mb` MiB hold, or, when that is 0
  // too, what fits in `gpu_memory_fraction` of the GPU after the weights
  // and activations.
  int32_t num_kv_blocks = 0;
  int64_t kv_cache_mb = 0;
  double gpu_memory_fraction = 0.9;
  // The worker's batch limits: they size the activations.
  int32_t max_batched_tokens = 2048;
  int32_t max_num_seqs = 256;
  bool cuda_graphs = true;
};

struct CudaBackendHandle {
  std::unique_ptr<Backend> backend;
  // GPU, memory and cache size, for the start-up log.
  std::string description;
};

// The nccl KV transport (worker/cuda/nccl_transport.h), also in the module.
struct NcclTransportOptions {
  int32_t device = 0;
  // Communicators kept open in each direction (to decode workers this one
  // prefills for, and from prefill workers); the least recently used idle
  // one is torn down for a new peer. Each costs GPU memory (NCCL buffers).
  int32_t max_peers = 8;
  // A transfer, or a communicator's set-up, that makes no progress for this
  // long fails (the decode worker recomputes) and its communicator is torn down.
  int32_t io_timeout_ms = 30000;
};

// Parses "cuda:N"; InvalidArgument otherwise.
absl::StatusOr<int32_t> ParseCudaDevice(const std::string& device);

// Loads the module (from $TOKENFAB_CUDA_MODULE, else beside the running
// executable, else ../lib/tokenfab/ from it) and creates the backend.
absl::StatusOr<CudaBackendHandle> CreateCudaBackend(const ModelConfig& config,
                                                    const ModelWeights& weights,
                                                    const CudaBackendOptions& options);

// Loads the module (as CreateCudaBackend) and NCCL, and creates the nccl
// transport for GPU options.device.
absl::StatusOr<std::unique_ptr<KvTransport>> CreateNcclTransport(
    const NcclTransportOptions& options);

// The module's C entry points; the version guards against a module from
// another build (the structs above cross the boundary as they are).
inline constexpr int32_t kCudaModuleAbi = 3;  // 3: SequenceStep::prompt_end
struct CudaModuleCall {
  int32_t abi = kCudaModuleAbi;
  size_t config_size = sizeof(ModelConfig);
  size_t weights_size = sizeof(ModelWeights);
  size_t options_size = sizeof(CudaBackendOptions);
  const ModelConfig* config = nullptr;
  const ModelWeights* weights = nullptr;
  const CudaBackendOptions* options = nullptr;
  // Out: the backend (owned by the caller), or the error.
  Backend* backend = nullptr;
  int32_t error_code = 0;  // absl::StatusCode
  std::string message;     // the error, or the description
};
using CudaModuleEntry = void (*)(CudaModuleCall*);
inline constexpr char kCudaModuleEntryName[] = "tokenfab_cuda_create_backend";

struct NcclModuleCall {
  int32_t abi = kCudaModuleAbi;
  size_t options_size = sizeof(NcclTransportOptions);
  const NcclTransportOptions* options = nullptr;
  // Out: the transport (owned by the caller), or the error.
  KvTransport* transport = nullptr;
  int32_t error_code = 0;  // absl::StatusCode
  std::string message;
};
using NcclModuleEntry = void (*)(NcclModuleCall*);
inline constexpr char kNcclModuleEntryName[] = "tokenfab_cuda_create_nccl_transport";

}  // namespace tokenfab

#endif  // TOKENFAB_WORKER_ENGINE_CUDA_MODULE_H_
