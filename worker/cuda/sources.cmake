# The CUDA backend's sources, in one list for the two builds of them: the
# real one here (nvcc, CUDA runtime) and the CUDA emulator's
# (tests/cuda_emu: the same files compiled as C++ against a CPU runtime).
set(TOKENFAB_CUDA_KERNEL_SOURCES layer_kernels.cu attention.cu sampling.cu)
set(TOKENFAB_CUDA_HOST_SOURCES
  gemm.cc device_model.cc cuda_backend.cc nccl_api.cc nccl_channel.cc nccl_transport.cc)
# What libtokenfab_cuda.so compiles of the worker's own (see CMakeLists.txt).
set(TOKENFAB_CUDA_MODULE_SOURCES
  ${PROJECT_SOURCE_DIR}/worker/cuda/module.cc ${PROJECT_SOURCE_DIR}/worker/engine/backend.cc
  ${PROJECT_SOURCE_DIR}/worker/kernels/dequantize.cc
  ${PROJECT_SOURCE_DIR}/worker/transport/kv_transport.cc
  ${PROJECT_SOURCE_DIR}/worker/transport/kv_wire.cc)
