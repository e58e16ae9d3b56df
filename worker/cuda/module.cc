// The entry point of libtokenfab_cuda.so, which the worker loads with dlopen
// (worker/engine/cuda_module.h) when asked for --device cuda:N.
#include "worker/cuda/cuda_backend.h"
#include "worker/cuda/nccl_transport.h"
#include "worker/engine/cuda_module.h"

extern "C" __attribute__((visibility("default"))) void tokenfab_cuda_create_backend(
    tokenfab::CudaModuleCall* call) {
  using tokenfab::CudaModuleCall;
  if (call->abi != tokenfab::kCudaModuleAbi || call->config_size != sizeof(tokenfab::ModelConfig) ||
      call->weights_size != sizeof(tokenfab::ModelWeights) ||
      call->options_size != sizeof(tokenfab::CudaBackendOptions)) {
    call->error_code = static_cast<int32_t>(absl::StatusCode::kFailedPrecondition);
    call->message = "the CUDA module is from another tokenfab build; rebuild both together";
    return;
  }
  auto backend = tokenfab::cuda::CudaBackend::Create(*call->config, *call->weights, *call->options);
  if (!backend.ok()) {
    call->error_code = static_cast<int32_t>(backend.status().code());
    call->message = std::string(backend.status().message());
    return;
  }
  call->message = (*backend)->description();
  call->backend = backend->release();
}

extern "C" __attribute__((visibility("default"))) void tokenfab_cuda_create_nccl_transport(
    tokenfab::NcclModuleCall* call) {
  if (call->abi != tokenfab::kCudaModuleAbi ||
      call->options_size != sizeof(tokenfab::NcclTransportOptions)) {
    call->error_code = static_cast<int32_t>(absl::StatusCode::kFailedPrecondition);
    call->message = "the CUDA module is from another tokenfab build; rebuild both together";
    return;
  }
  auto transport = tokenfab::cuda::NcclTransport::Create(*call->options);
  if (!transport.ok()) {
    call->error_code = static_cast<int32_t>(transport.status().code());
    call->message = std::string(transport.status().message());
    return;
  }
  call->message = (*transport)->endpoint();
  call->transport = transport->release();
}
