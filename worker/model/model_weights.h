// The weights of a Llama-family decoder as the kernels consume them: matrices
// stay in their stored format (quantized GGUF blocks, or F32/F16/BF16 from
// safetensors) inside the memory map; only small vectors (norms, biases) are
// copied out as float. Shapes are checked against the ModelConfig at load, so
// the forward pass never reads outside a tensor.
#ifndef TOKENFAB_WORKER_MODEL_MODEL_WEIGHTS_H_
#define TOKENFAB_WORKER_MODEL_MODEL_WEIGHTS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/model/model_config.h"
#include "worker/model/tensor_types.h"

namespace tokenfab {

class GgufFile;
class SafetensorsCheckpoint;

// A row-major matrix of `rows` rows of `cols` elements each, stored as `type`.
// y = W x means y[r] = dot(row r, x).
struct WeightMatrix {
  DType type = DType::kF32;
  int64_t rows = 0;
  int64_t cols = 0;
  uint64_t row_bytes = 0;
  const uint8_t* data = nullptr;

  const uint8_t* row(int64_t r) const { return data + static_cast<uint64_t>(r) * row_bytes; }
};

struct LayerWeights {
  std::vector<float> attn_norm;
  WeightMatrix wq, wk, wv, wo;
  std::vector<float> bq, bk, bv;  // empty unless the model has q/k/v biases
  std::vector<float> ffn_norm;
  WeightMatrix w_gate, w_up, w_down;
};

struct ModelWeights {
  WeightMatrix token_embedding;  // vocab_size rows of hidden_size
  std::vector<LayerWeights> layers;
  std::vector<float> output_norm;
  WeightMatrix output;  // the LM head; the token embedding when tied
};

// Reads GGUF tensor names (token_embd, blk.N.attn_q, ...).
absl::StatusOr<ModelWeights> WeightsFromGguf(const GgufFile& gguf, const ModelConfig& config);

// Reads Hugging Face names (model.embed_tokens, model.layers.N.self_attn.q_proj, ...).
absl::StatusOr<ModelWeights> WeightsFromSafetensors(const SafetensorsCheckpoint& ckpt,
                                                    const ModelConfig& config,
                                                    const std::string& source);

// Reads GGUF's optional rope_freqs.weight (Llama 3 rope scaling); empty if absent.
absl::StatusOr<std::vector<float>> RopeFreqFactorsFromGguf(const GgufFile& gguf);

}  // namespace tokenfab

#endif  // TOKENFAB_WORKER_MODEL_MODEL_WEIGHTS_H_
