// A model's weights on the GPU in bf16, as the CUDA backend's GEMMs read
// them: q, k and v projections fused into one [q + 2 kv][hidden] matrix,
// gate and up into one [2 ff][hidden], norms and biases in float. Built from
// the loaded (memory-mapped, possibly quantized) weights by dequantizing
// each row on the host; a tied LM head shares the embedding's memory.
#ifndef TOKENFAB_WORKER_CUDA_DEVICE_MODEL_H_
#define TOKENFAB_WORKER_CUDA_DEVICE_MODEL_H_

#include <vector>

#include "absl/status/statusor.h"
#include "worker/cuda/device_buffer.h"
#include "worker/cuda/kernels.h"
#include "worker/model/model_config.h"
#include "worker/model/model_weights.h"

namespace tokenfab::cuda {

struct DeviceLayer {
  DeviceBuffer<float> attn_norm, ffn_norm;
  DeviceBuffer<float> qkv_bias;  // empty unless the model has q/k/v biases
  DeviceBuffer<bf16> wqkv, wo, w_gate_up, w_down;
};

struct DeviceModel {
  DeviceBuffer<bf16> embedding;
  std::vector<DeviceLayer> layers;
  DeviceBuffer<float> output_norm;
  DeviceBuffer<bf16> lm_head_storage;  // empty when tied
  const bf16* lm_head = nullptr;       // embedding or lm_head_storage
  DeviceBuffer<float> inv_freq;
  size_t bytes = 0;  // of weights on the device

  static absl::StatusOr<DeviceModel> Upload(const ModelConfig& config, const ModelWeights& weights,
                                            cudaStream_t stream);
};

// Rounds to bf16 (nearest, ties to even; NaN stays NaN).
uint16_t FloatToBf16Bits(float f);

}  // namespace tokenfab::cuda

#endif  // TOKENFAB_WORKER_CUDA_DEVICE_MODEL_H_
