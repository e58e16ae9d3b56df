#include "worker/engine/backend_factory.h"

#include "common/status_macros.h"
#include "common/strings.h"
#include "worker/engine/cpu_backend.h"
#include "worker/engine/cuda_module.h"
#include "worker/engine/kv_cache.h"

namespace tokenfab {

absl::StatusOr<DeviceBackend> MakeDeviceBackend(const LoadedModel& model,
                                                const DeviceBackendOptions& o) {
  DeviceBackend out;
  if (o.device != "cpu") {
    CudaBackendOptions co;
    ASSIGN_OR_RETURN(co.device, ParseCudaDevice(o.device));
    if (o.gpu_memory_fraction <= 0 || o.gpu_memory_fraction > 1) {
      return absl::InvalidArgumentError(StrCat("--gpu-memory-fraction must be in (0, 1], got ",
                                               o.gpu_memory_fraction));
    }
    co.kv_cache_mb = o.kv_cache_mb_given ? o.kv_cache_mb : 0;
    co.gpu_memory_fraction = o.gpu_memory_fraction;
    co.max_batched_tokens = o.scheduler.max_batched_tokens;
    co.max_num_seqs = o.scheduler.max_num_seqs;
    co.cuda_graphs = o.cuda_graphs;
    ASSIGN_OR_RETURN(CudaBackendHandle cuda, CreateCudaBackend(model.config, model.weights, co));
    out.backend = std::move(cuda.backend);
    out.description = std::move(cuda.description);
    return out;
  }
  ASSIGN_OR_RETURN(const int32_t blocks,
                   KvCache::BlocksIn(model.config, o.kv_dtype, o.kv_cache_mb));
  CpuBackendOptions bo;
  bo.threads = o.threads;
  bo.kv_dtype = o.kv_dtype;
  bo.num_kv_blocks = blocks;
  ASSIGN_OR_RETURN(out.backend, CpuBackend::Create(model.config, model.weights, bo));
  out.description = StrCat("CPU, ", o.threads, " threads, ", blocks, " KV blocks of 16 tokens");
  return out;
}

}  // namespace tokenfab
