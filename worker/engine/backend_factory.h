// The forward pass an engine runs on a device: the CPU engine on "cpu", the
// CUDA backend (loaded from its module, cuda_module.h) on "cuda:N". One
// place for `tokenfab serve` and `tokenfab worker` to turn their flags into
// a backend.
#ifndef TOKENFAB_WORKER_ENGINE_BACKEND_FACTORY_H_
#define TOKENFAB_WORKER_ENGINE_BACKEND_FACTORY_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "worker/engine/backend.h"
#include "worker/engine/batch_scheduler.h"
#include "worker/kernels/attention.h"
#include "worker/model_loader.h"

namespace tokenfab {

struct DeviceBackendOptions {
  std::string device = "cpu";  // or "cuda:N"
  int32_t threads = 1;         // CPU engine threads
  KvDType kv_dtype = KvDType::kF16;  // the CPU cache's; a GPU's is bf16
  int32_t kv_cache_mb = 1024;
  // On a GPU the KV cache is kv_cache_mb only when given; otherwise it
  // takes what fits in gpu_memory_fraction of the GPU (as vLLM's
  // --gpu-memory-utilization).
  bool kv_cache_mb_given = false;
  double gpu_memory_fraction = 0.9;
  bool cuda_graphs = true;
  SchedulerOptions scheduler;  // its batch limits size a GPU's activations
};

struct DeviceBackend {
  std::unique_ptr<Backend> backend;
  std::string description;  // a GPU's name, memory and cache, for the start-up log
};

absl::StatusOr<DeviceBackend> MakeDeviceBackend(const LoadedModel& model,
                                                const DeviceBackendOptions& options);

}  // namespace tokenfab

#endif  // TOKENFAB_WORKER_ENGINE_BACKEND_FACTORY_H_
