// The hyper-parameters of a Llama-family decoder (llama, mistral, qwen2), read
// from GGUF metadata or a Hugging Face config.json, validated once at load.
// Every later size (buffers, KV cache, kernels' loop bounds) derives from a
// validated ModelConfig, so an absurd header field stops at Validate().
#ifndef TOKENFAB_WORKER_MODEL_MODEL_CONFIG_H_
#define TOKENFAB_WORKER_MODEL_MODEL_CONFIG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json_fwd.hpp"

namespace tokenfab {

class GgufFile;

enum class Architecture { kLlama, kMistral, kQwen2 };

// How rotary embeddings pair up the dimensions of a head.
enum class RopeStyle {
  kInterleaved,  // pairs (2i, 2i+1): GGUF llama, whose converter permutes q/k
  kHalves,       // pairs (i, i + d/2): Hugging Face checkpoints, GGUF qwen2 ("neox")
};

struct ModelConfig {
  Architecture arch = Architecture::kLlama;
  std::string arch_name;  // as written in the file
  std::string name;       // human-readable model name, for logs and ListModels
  int32_t vocab_size = 0;
  int32_t hidden_size = 0;
  int32_t intermediate_size = 0;
  int32_t num_layers = 0;
  int32_t num_heads = 0;
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;
  int32_t context_length = 0;
  float rms_norm_eps = 1e-5f;
  float rope_theta = 10000.0f;
  RopeStyle rope_style = RopeStyle::kInterleaved;
  bool tied_embeddings = false;
  bool qkv_bias = false;
  // Rotary inverse frequency per pair of head dimensions (head_dim / 2 values),
  // with any scaling (llama3, linear) already applied.
  std::vector<float> rope_inv_freq;

  int32_t q_dim() const { return num_heads * head_dim; }
  int32_t kv_dim() const { return num_kv_heads * head_dim; }

  // Checks ranges and divisibility; `source` names the file in errors.
  absl::Status Validate(const std::string& source) const;
};

// Reads `<arch>.*` keys. Llama 3 rope scaling in GGUF arrives as the
// rope_freqs.weight tensor; pass its values (or empty) as `rope_freq_factors`.
absl::StatusOr<ModelConfig> ModelConfigFromGguf(const GgufFile& gguf,
                                                const std::vector<float>& rope_freq_factors);

// Reads a Hugging Face config.json already parsed; `source` names it in errors.
absl::StatusOr<ModelConfig> ModelConfigFromHfJson(const nlohmann::json& config,
                                                  const std::string& source);

// Rotary inverse frequencies theta^(-2i/d), then scaled: llama3 scaling
// (factor, low/high frequency factors, original context) as in Llama 3.1.
struct Llama3RopeScaling {
  float factor = 8.0f;
  float low_freq_factor = 1.0f;
  float high_freq_factor = 4.0f;
  int32_t original_max_position = 8192;
};
std::vector<float> RopeInverseFrequencies(int32_t head_dim, float theta);
void ApplyLlama3RopeScaling(const Llama3RopeScaling& s, std::vector<float>* inv_freq);

}  // namespace tokenfab

#endif  // TOKENFAB_WORKER_MODEL_MODEL_CONFIG_H_
