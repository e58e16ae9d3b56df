#include "worker/model/model_config.h"

#include <cmath>
#include <numbers>

#include "common/status_macros.h"
#include "common/strings.h"
#include "nlohmann/json.hpp"
#include "worker/model/gguf_file.h"

namespace tokenfab {
namespace {

// Bounds far above any real model; they keep a hostile file from sizing
// buffers (hidden * context * layers...) into the terabytes.
constexpr int64_t kMaxHidden = 1 << 16;
constexpr int64_t kMaxIntermediate = 1 << 18;
constexpr int64_t kMaxLayers = 1024;
constexpr int64_t kMaxHeads = 1024;
constexpr int64_t kMaxHeadDim = 1024;
constexpr int64_t kMaxVocab = 1 << 22;
constexpr int64_t kMaxContext = 1 << 24;

absl::Status CheckRange(const std::string& source, std::string_view what, int64_t v, int64_t lo,
                        int64_t hi) {
  if (v < lo || v > hi) {
    return absl::InvalidArgumentError(
        StrCat(source, ": ", what, " = ", v, " is out of range [", lo, ", ", hi, "]"));
  }
  return absl::OkStatus();
}

absl::StatusOr<Architecture> ParseArchitecture(const std::string& source, const std::string& a) {
  if (a == "llama") return Architecture::kLlama;
  if (a == "mistral") return Architecture::kMistral;
  if (a == "qwen2") return Architecture::kQwen2;
  return absl::InvalidArgumentError(StrCat(source, ": unsupported architecture '", a,
                                           "' (supported: llama, mistral, qwen2)"));
}

}  // namespace

std::vector<float> RopeInverseFrequencies(int32_t head_dim, float theta) {
  std::vector<float> inv(head_dim / 2);
  for (int32_t i = 0; i < head_dim / 2; ++i) {
    inv[i] = static_cast<float>(1.0 / std::pow(static_cast<double>(theta), 2.0 * i / head_dim));
  }
  return inv;
}

void ApplyLlama3RopeScaling(const Llama3RopeScaling& s, std::vector<float>* inv_freq) {
  // Long wavelengths (low frequencies) are stretched by `factor`, short ones
  // kept, and the band between is interpolated smoothly (Llama 3.1's rule).
  const double low_wavelen = s.original_max_position / s.low_freq_factor;
  const double high_wavelen = s.original_max_position / s.high_freq_factor;
  for (float& f : *inv_freq) {
    const double wavelen = 2.0 * std::numbers::pi / f;
    if (wavelen < high_wavelen) continue;
    if (wavelen > low_wavelen) {
      f = static_cast<float>(f / s.factor);
      continue;
    }
    const double smooth = (s.original_max_position / wavelen - s.low_freq_factor) /
                          (s.high_freq_factor - s.low_freq_factor);
    f = static_cast<float>((1.0 - smooth) * f / s.factor + smooth * f);
  }
}

absl::Status ModelConfig::Validate(const std::string& source) const {
  RETURN_IF_ERROR(CheckRange(source, "vocabulary size", vocab_size, 1, kMaxVocab));
  RETURN_IF_ERROR(CheckRange(source, "hidden size", hidden_size, 1, kMaxHidden));
  RETURN_IF_ERROR(CheckRange(source, "intermediate size", intermediate_size, 1, kMaxIntermediate));
  RETURN_IF_ERROR(CheckRange(source, "layer count", num_layers, 1, kMaxLayers));
  RETURN_IF_ERROR(CheckRange(source, "attention head count", num_heads, 1, kMaxHeads));
  RETURN_IF_ERROR(CheckRange(source, "KV head count", num_kv_heads, 1, num_heads));
  RETURN_IF_ERROR(CheckRange(source, "head dimension", head_dim, 2, kMaxHeadDim));
  RETURN_IF_ERROR(CheckRange(source, "context length", context_length, 1, kMaxContext));
  if (num_heads % num_kv_heads != 0) {
    return absl::InvalidArgumentError(StrCat(source, ": ", num_heads,
                                             " attention heads are not a multiple of ",
                                             num_kv_heads, " KV heads"));
  }
  if (head_dim % 2 != 0) {
    return absl::InvalidArgumentError(StrCat(source, ": head dimension ", head_dim, " is odd"));
  }
  if (!(rms_norm_eps > 0) || !std::isfinite(rms_norm_eps)) {
    return absl::InvalidArgumentError(StrCat(source, ": invalid RMS norm epsilon ", rms_norm_eps));
  }
  if (!(rope_theta > 0) || !std::isfinite(rope_theta)) {
    return absl::InvalidArgumentError(StrCat(source, ": invalid rope theta ", rope_theta));
  }
  if (static_cast<int32_t>(rope_inv_freq.size()) != head_dim / 2) {
    return absl::InvalidArgumentError(StrCat(source, ": rope frequency table has ",
                                             rope_inv_freq.size(), " entries, expected ",
                                             head_dim / 2));
  }
  for (float f : rope_inv_freq) {
    if (!(f > 0) || !std::isfinite(f)) {
      return absl::InvalidArgumentError(StrCat(source, ": invalid rope frequency ", f));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<ModelConfig> ModelConfigFromGguf(const GgufFile& gguf,
                                                const std::vector<float>& rope_freq_factors) {
  const std::string& src = gguf.path();
  ModelConfig c;
  ASSIGN_OR_RETURN(c.arch_name, gguf.GetString("general.architecture"));
  ASSIGN_OR_RETURN(c.arch, ParseArchitecture(src, c.arch_name));
  ASSIGN_OR_RETURN(c.name, gguf.GetStringOr("general.name", c.arch_name));
  const std::string a = c.arch_name + ".";

  auto get_int = [&](const std::string& key, int64_t lo, int64_t hi) -> absl::StatusOr<int32_t> {
    ASSIGN_OR_RETURN(int64_t v, gguf.GetInt(key));
    RETURN_IF_ERROR(CheckRange(src, key, v, lo, hi));
    return static_cast<int32_t>(v);
  };
  ASSIGN_OR_RETURN(c.num_layers, get_int(a + "block_count", 1, kMaxLayers));
  ASSIGN_OR_RETURN(c.hidden_size, get_int(a + "embedding_length", 1, kMaxHidden));
  ASSIGN_OR_RETURN(c.intermediate_size, get_int(a + "feed_forward_length", 1, kMaxIntermediate));
  ASSIGN_OR_RETURN(c.num_heads, get_int(a + "attention.head_count", 1, kMaxHeads));
  ASSIGN_OR_RETURN(c.context_length, get_int(a + "context_length", 1, kMaxContext));
  ASSIGN_OR_RETURN(int64_t kv_heads, gguf.GetIntOr(a + "attention.head_count_kv", c.num_heads));
  RETURN_IF_ERROR(CheckRange(src, a + "attention.head_count_kv", kv_heads, 1, kMaxHeads));
  c.num_kv_heads = static_cast<int32_t>(kv_heads);
  ASSIGN_OR_RETURN(int64_t head_dim,
                   gguf.GetIntOr(a + "attention.key_length", c.hidden_size / c.num_heads));
  RETURN_IF_ERROR(CheckRange(src, a + "attention.key_length", head_dim, 2, kMaxHeadDim));
  c.head_dim = static_cast<int32_t>(head_dim);
  ASSIGN_OR_RETURN(int64_t v_dim, gguf.GetIntOr(a + "attention.value_length", c.head_dim));
  if (v_dim != c.head_dim) {
    return absl::InvalidArgumentError(StrCat(src, ": value head size ", v_dim,
                                             " differs from key head size ", c.head_dim,
                                             ", which is not supported"));
  }
  ASSIGN_OR_RETURN(int64_t rope_dims, gguf.GetIntOr(a + "rope.dimension_count", c.head_dim));
  if (rope_dims != c.head_dim) {
    return absl::InvalidArgumentError(StrCat(src, ": partial rotary embedding (", rope_dims, " of ",
                                             c.head_dim, " dimensions) is not supported"));
  }
  ASSIGN_OR_RETURN(double eps, gguf.GetFloatOr(a + "attention.layer_norm_rms_epsilon", 1e-5));
  c.rms_norm_eps = static_cast<float>(eps);
  ASSIGN_OR_RETURN(double theta, gguf.GetFloatOr(a + "rope.freq_base", 10000.0));
  c.rope_theta = static_cast<float>(theta);

  // The vocabulary size: explicit key, else the tokenizer's token list.
  if (gguf.Find(a + "vocab_size")) {
    ASSIGN_OR_RETURN(c.vocab_size, get_int(a + "vocab_size", 1, kMaxVocab));
  } else if (const GgufValue* tokens = gguf.Find("tokenizer.ggml.tokens")) {
    c.vocab_size = static_cast<int32_t>(std::min<size_t>(tokens->array_size(), kMaxVocab + 1));
  } else if (const GgufTensor* emb = gguf.FindTensor("token_embd.weight"); emb && emb->n_dims == 2) {
    c.vocab_size = static_cast<int32_t>(std::min<int64_t>(emb->ne[1], kMaxVocab + 1));
  }

  c.tied_embeddings = gguf.FindTensor("output.weight") == nullptr;
  c.qkv_bias = gguf.FindTensor("blk.0.attn_q.bias") != nullptr;
  // llama.cpp's converter permutes llama q/k rows so adjacent dimensions pair
  // up; qwen2 keeps Hugging Face's halves layout ("neox" rope).
  c.rope_style = c.arch == Architecture::kQwen2 ? RopeStyle::kHalves : RopeStyle::kInterleaved;

  if (c.head_dim % 2 != 0) {
    return absl::InvalidArgumentError(StrCat(src, ": head dimension ", c.head_dim, " is odd"));
  }
  c.rope_inv_freq = RopeInverseFrequencies(c.head_dim, c.rope_theta);
  ASSIGN_OR_RETURN(std::string scaling, gguf.GetStringOr(a + "rope.scaling.type", "none"));
  if (scaling == "linear") {
    ASSIGN_OR_RETURN(double factor, gguf.GetFloat(a + "rope.scaling.factor"));
    if (!(factor > 0)) {
      return absl::InvalidArgumentError(StrCat(src, ": invalid rope scaling factor ", factor));
    }
    for (float& f : c.rope_inv_freq) f = static_cast<float>(f / factor);
  } else if (scaling != "none") {
    return absl::InvalidArgumentError(
        StrCat(src, ": rope scaling '", scaling,
               "' is not supported (supported: linear; llama3 scaling comes as rope_freqs.weight)"));
  }
  if (!rope_freq_factors.empty()) {
    if (static_cast<int32_t>(rope_freq_factors.size()) != c.head_dim / 2) {
      return absl::InvalidArgumentError(StrCat(src, ": rope_freqs.weight has ",
                                               rope_freq_factors.size(), " values, expected ",
                                               c.head_dim / 2));
    }
    for (size_t i = 0; i < rope_freq_factors.size(); ++i) {
      c.rope_inv_freq[i] = c.rope_inv_freq[i] / rope_freq_factors[i];
    }
  }
  RETURN_IF_ERROR(c.Validate(src));
  return c;
}

namespace {

absl::StatusOr<ModelConfig> ParseHfConfig(const nlohmann::json& j, const std::string& src) {
  if (!j.is_object()) return absl::InvalidArgumentError(StrCat(src, ": not a JSON object"));
  auto get_int = [&](const char* key, int64_t lo, int64_t hi) -> absl::StatusOr<int32_t> {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) {
      return absl::InvalidArgumentError(StrCat(src, ": '", key, "' is missing"));
    }
    if (!it->is_number_integer()) {
      return absl::InvalidArgumentError(StrCat(src, ": '", key, "' is not an integer"));
    }
    const int64_t v = it->get<int64_t>();
    RETURN_IF_ERROR(CheckRange(src, key, v, lo, hi));
    return static_cast<int32_t>(v);
  };
  auto get_float = [&](const nlohmann::json& obj, const char* key,
                       double fallback) -> absl::StatusOr<double> {
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return fallback;
    if (!it->is_number()) {
      return absl::InvalidArgumentError(StrCat(src, ": '", key, "' is not a number"));
    }
    return it->get<double>();
  };

  ModelConfig c;
  auto mt = j.find("model_type");
  if (mt == j.end() || !mt->is_string()) {
    return absl::InvalidArgumentError(StrCat(src, ": 'model_type' is missing"));
  }
  c.arch_name = mt->get<std::string>();
  ASSIGN_OR_RETURN(c.arch, ParseArchitecture(src, c.arch_name));
  c.name = c.arch_name;
  if (auto it = j.find("_name_or_path"); it != j.end() && it->is_string() && !it->get<std::string>().empty()) {
    c.name = it->get<std::string>();
  }
  ASSIGN_OR_RETURN(c.vocab_size, get_int("vocab_size", 1, kMaxVocab));
  ASSIGN_OR_RETURN(c.hidden_size, get_int("hidden_size", 1, kMaxHidden));
  ASSIGN_OR_RETURN(c.intermediate_size, get_int("intermediate_size", 1, kMaxIntermediate));
  ASSIGN_OR_RETURN(c.num_layers, get_int("num_hidden_layers", 1, kMaxLayers));
  ASSIGN_OR_RETURN(c.num_heads, get_int("num_attention_heads", 1, kMaxHeads));
  c.num_kv_heads = c.num_heads;
  if (j.contains("num_key_value_heads") && !j["num_key_value_heads"].is_null()) {
    ASSIGN_OR_RETURN(c.num_kv_heads, get_int("num_key_value_heads", 1, kMaxHeads));
  }
  c.head_dim = c.hidden_size / c.num_heads;
  if (j.contains("head_dim") && !j["head_dim"].is_null()) {
    ASSIGN_OR_RETURN(c.head_dim, get_int("head_dim", 2, kMaxHeadDim));
  }
  ASSIGN_OR_RETURN(c.context_length, get_int("max_position_embeddings", 1, kMaxContext));
  // A sliding window shorter than the context changes attention beyond it;
  // tokenfab attends to the whole context, so it caps the context instead of
  // silently computing something else.
  const bool window_on = c.arch == Architecture::kMistral ||
                         (j.contains("use_sliding_window") && j["use_sliding_window"].is_boolean() &&
                          j["use_sliding_window"].get<bool>());
  if (window_on && j.contains("sliding_window") && j["sliding_window"].is_number_integer()) {
    const int64_t w = j["sliding_window"].get<int64_t>();
    if (w > 0 && w < c.context_length) c.context_length = static_cast<int32_t>(w);
  }
  ASSIGN_OR_RETURN(double eps, get_float(j, "rms_norm_eps", 1e-6));
  c.rms_norm_eps = static_cast<float>(eps);
  // transformers 5 writes rope_theta and the scaling into "rope_parameters";
  // older configs have "rope_theta" and "rope_scaling" at the top level.
  const nlohmann::json* rope_params = nullptr;
  if (auto rp = j.find("rope_parameters"); rp != j.end() && rp->is_object()) rope_params = &*rp;
  ASSIGN_OR_RETURN(double theta, get_float(j, "rope_theta", 10000.0));
  if (rope_params && rope_params->contains("rope_theta")) {
    ASSIGN_OR_RETURN(theta, get_float(*rope_params, "rope_theta", 10000.0));
  }
  c.rope_theta = static_cast<float>(theta);
  if (auto act = j.find("hidden_act"); act != j.end() && act->is_string() && *act != "silu") {
    return absl::InvalidArgumentError(StrCat(src, ": hidden_act '", act->get<std::string>(),
                                             "' is not supported (supported: silu)"));
  }
  if (j.value("mlp_bias", false)) {
    return absl::InvalidArgumentError(StrCat(src, ": MLP biases are not supported"));
  }
  c.tied_embeddings = j.value("tie_word_embeddings", false);
  c.qkv_bias = c.arch == Architecture::kQwen2 || j.value("attention_bias", false);
  c.rope_style = RopeStyle::kHalves;  // Hugging Face's rotate_half convention

  if (c.head_dim % 2 != 0) {
    return absl::InvalidArgumentError(StrCat(src, ": head dimension ", c.head_dim, " is odd"));
  }
  c.rope_inv_freq = RopeInverseFrequencies(c.head_dim, c.rope_theta);
  const nlohmann::json* scaling = nullptr;
  if (auto rs = j.find("rope_scaling"); rs != j.end() && !rs->is_null()) scaling = &*rs;
  if (!scaling && rope_params) scaling = rope_params;
  if (scaling) {
    const nlohmann::json* rs = scaling;
    if (!rs->is_object()) {
      return absl::InvalidArgumentError(StrCat(src, ": 'rope_scaling' is not an object"));
    }
    std::string type = rs->value("rope_type", rs->value("type", std::string("default")));
    if (type == "llama3") {
      Llama3RopeScaling s;
      ASSIGN_OR_RETURN(double factor, get_float(*rs, "factor", 8.0));
      ASSIGN_OR_RETURN(double low, get_float(*rs, "low_freq_factor", 1.0));
      ASSIGN_OR_RETURN(double high, get_float(*rs, "high_freq_factor", 4.0));
      ASSIGN_OR_RETURN(double orig, get_float(*rs, "original_max_position_embeddings", 8192));
      if (!(factor > 0) || !(low > 0) || !(high > low) || !(orig >= 1) || !(orig <= kMaxContext)) {
        return absl::InvalidArgumentError(StrCat(src, ": invalid llama3 rope_scaling"));
      }
      s.factor = static_cast<float>(factor);
      s.low_freq_factor = static_cast<float>(low);
      s.high_freq_factor = static_cast<float>(high);
      s.original_max_position = static_cast<int32_t>(orig);
      ApplyLlama3RopeScaling(s, &c.rope_inv_freq);
    } else if (type == "linear") {
      ASSIGN_OR_RETURN(double factor, get_float(*rs, "factor", 1.0));
      if (!(factor > 0)) {
        return absl::InvalidArgumentError(StrCat(src, ": invalid rope scaling factor"));
      }
      for (float& f : c.rope_inv_freq) f = static_cast<float>(f / factor);
    } else if (type != "default") {
      return absl::InvalidArgumentError(StrCat(src, ": rope_scaling type '", type,
                                               "' is not supported (supported: llama3, linear)"));
    }
  }
  RETURN_IF_ERROR(c.Validate(src));
  return c;
}

}  // namespace

absl::StatusOr<ModelConfig> ModelConfigFromHfJson(const nlohmann::json& config,
                                                  const std::string& source) {
  // A field of an unexpected JSON type (e.g. "tie_word_embeddings": 1) makes
  // nlohmann throw; it is bad input like any other.
  try {
    return ParseHfConfig(config, source);
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(StrCat(source, ": unexpected value type: ", e.what()));
  }
}

}  // namespace tokenfab
