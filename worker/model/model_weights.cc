#include "worker/model/model_weights.h"

#include <cstring>

#include "common/half.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "worker/model/gguf_file.h"
#include "worker/model/safetensors_file.h"

namespace tokenfab {
namespace {

// A tensor as found in either format, before shape checks.
struct RawTensor {
  std::string name;
  DType type;
  std::vector<int64_t> shape;  // outermost first (rows, cols)
  const uint8_t* data;
  uint64_t n_bytes;
  std::string file;  // the file (or shard) holding it, for errors
};

absl::Status ShapeError(const RawTensor& t, int64_t rows, int64_t cols) {
  std::string got;
  for (size_t i = 0; i < t.shape.size(); ++i) StrAppend(&got, i ? " x " : "", t.shape[i]);
  return absl::InvalidArgumentError(StrCat(t.file, ": tensor '", t.name, "' has shape [", got,
                                           "], expected [", rows, " x ", cols, "]"));
}

absl::StatusOr<WeightMatrix> ToMatrix(const RawTensor& t, int64_t rows, int64_t cols) {
  if (t.shape.size() != 2 || t.shape[0] != rows || t.shape[1] != cols) {
    return ShapeError(t, rows, cols);
  }
  auto row_bytes = RowBytes(t.type, cols);
  if (!row_bytes || *row_bytes * static_cast<uint64_t>(rows) != t.n_bytes) {
    return absl::InvalidArgumentError(StrCat(t.file, ": tensor '", t.name, "' holds ", t.n_bytes,
                                             " bytes, which does not match its shape and type ",
                                             Traits(t.type).name));
  }
  // The float kernels load F32 rows as floats; keep them aligned (real files
  // align tensor data to 32 bytes).
  if (t.type == DType::kF32 && reinterpret_cast<uintptr_t>(t.data) % alignof(float) != 0) {
    return absl::InvalidArgumentError(
        StrCat(t.file, ": F32 tensor '", t.name, "' is not 4-byte aligned in the file"));
  }
  return WeightMatrix{t.type, rows, cols, *row_bytes, t.data};
}

absl::StatusOr<std::vector<float>> ToVector(const RawTensor& t, int64_t n) {
  if (t.shape.size() != 1 || t.shape[0] != n) return ShapeError(t, 1, n);
  if (t.type != DType::kF32 && t.type != DType::kF16 && t.type != DType::kBF16) {
    return absl::InvalidArgumentError(StrCat(t.file, ": vector tensor '", t.name,
                                             "' must be F32, F16 or BF16, not ",
                                             Traits(t.type).name));
  }
  const uint64_t elem = t.type == DType::kF32 ? 4 : 2;
  if (t.n_bytes != static_cast<uint64_t>(n) * elem) {
    return absl::InvalidArgumentError(StrCat(t.file, ": tensor '", t.name, "' has the wrong size"));
  }
  std::vector<float> out(n);
  if (t.type == DType::kF32) {
    std::memcpy(out.data(), t.data, n * 4);
    return out;
  }
  for (int64_t i = 0; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, t.data + 2 * i, 2);
    out[i] = t.type == DType::kF16 ? Fp16ToFp32(h) : Bf16ToFp32(h);
  }
  return out;
}

// Looks tensors up by name in one format; the assembly below is shared.
class TensorSource {
 public:
  virtual ~TensorSource() = default;
  virtual absl::StatusOr<RawTensor> Get(const std::string& name) const = 0;
  virtual bool Has(const std::string& name) const = 0;
};

class GgufSource : public TensorSource {
 public:
  explicit GgufSource(const GgufFile& f) : f_(f) {}
  bool Has(const std::string& name) const override { return f_.FindTensor(name) != nullptr; }
  absl::StatusOr<RawTensor> Get(const std::string& name) const override {
    const GgufTensor* t = f_.FindTensor(name);
    if (!t) return absl::NotFoundError(StrCat(f_.path(), ": tensor '", name, "' is missing"));
    RawTensor r{t->name, t->type, {}, t->data, t->n_bytes, f_.path()};
    for (int d = t->n_dims - 1; d >= 0; --d) r.shape.push_back(t->ne[d]);  // ne[0] is innermost
    return r;
  }

 private:
  const GgufFile& f_;
};

class SafetensorsSource : public TensorSource {
 public:
  SafetensorsSource(const SafetensorsCheckpoint& c, const std::string& source)
      : c_(c), source_(source) {}
  bool Has(const std::string& name) const override { return c_.Find(name) != nullptr; }
  absl::StatusOr<RawTensor> Get(const std::string& name) const override {
    const SafetensorsTensor* t = c_.Find(name);
    if (!t) return absl::NotFoundError(StrCat(source_, ": tensor '", name, "' is missing"));
    DType type;
    if (t->dtype == "F32") {
      type = DType::kF32;
    } else if (t->dtype == "F16") {
      type = DType::kF16;
    } else if (t->dtype == "BF16") {
      type = DType::kBF16;
    } else {
      return absl::InvalidArgumentError(StrCat(*t->file, ": tensor '", name, "' has dtype ",
                                               t->dtype, " (supported: F32, F16, BF16)"));
    }
    return RawTensor{t->name, type, t->shape, t->data, t->n_bytes, *t->file};
  }

 private:
  const SafetensorsCheckpoint& c_;
  const std::string& source_;
};

struct TensorNames {
  std::string embedding, output_norm, output;
  std::string (*layer)(int layer, std::string_view part);
};

std::string GgufLayerName(int i, std::string_view part) { return StrCat("blk.", i, ".", part); }

std::string HfLayerName(int i, std::string_view part) {
  static constexpr std::pair<std::string_view, std::string_view> kMap[] = {
      {"attn_norm.weight", "input_layernorm.weight"},
      {"attn_q.weight", "self_attn.q_proj.weight"},
      {"attn_k.weight", "self_attn.k_proj.weight"},
      {"attn_v.weight", "self_attn.v_proj.weight"},
      {"attn_output.weight", "self_attn.o_proj.weight"},
      {"attn_q.bias", "self_attn.q_proj.bias"},
      {"attn_k.bias", "self_attn.k_proj.bias"},
      {"attn_v.bias", "self_attn.v_proj.bias"},
      {"ffn_norm.weight", "post_attention_layernorm.weight"},
      {"ffn_gate.weight", "mlp.gate_proj.weight"},
      {"ffn_up.weight", "mlp.up_proj.weight"},
      {"ffn_down.weight", "mlp.down_proj.weight"},
  };
  for (const auto& [gguf, hf] : kMap) {
    if (gguf == part) return StrCat("model.layers.", i, ".", hf);
  }
  return std::string(part);
}

absl::StatusOr<ModelWeights> Assemble(const TensorSource& src, const TensorNames& names,
                                      const ModelConfig& c) {
  auto matrix = [&](const std::string& name, int64_t rows,
                    int64_t cols) -> absl::StatusOr<WeightMatrix> {
    ASSIGN_OR_RETURN(RawTensor t, src.Get(name));
    return ToMatrix(t, rows, cols);
  };
  auto vec = [&](const std::string& name, int64_t n) -> absl::StatusOr<std::vector<float>> {
    ASSIGN_OR_RETURN(RawTensor t, src.Get(name));
    return ToVector(t, n);
  };
  ModelWeights w;
  ASSIGN_OR_RETURN(w.token_embedding, matrix(names.embedding, c.vocab_size, c.hidden_size));
  ASSIGN_OR_RETURN(w.output_norm, vec(names.output_norm, c.hidden_size));
  if (c.tied_embeddings && !src.Has(names.output)) {
    w.output = w.token_embedding;
  } else {
    ASSIGN_OR_RETURN(w.output, matrix(names.output, c.vocab_size, c.hidden_size));
  }
  w.layers.resize(c.num_layers);
  for (int i = 0; i < c.num_layers; ++i) {
    LayerWeights& l = w.layers[i];
    auto name = [&](std::string_view part) { return names.layer(i, part); };
    ASSIGN_OR_RETURN(l.attn_norm, vec(name("attn_norm.weight"), c.hidden_size));
    ASSIGN_OR_RETURN(l.wq, matrix(name("attn_q.weight"), c.q_dim(), c.hidden_size));
    ASSIGN_OR_RETURN(l.wk, matrix(name("attn_k.weight"), c.kv_dim(), c.hidden_size));
    ASSIGN_OR_RETURN(l.wv, matrix(name("attn_v.weight"), c.kv_dim(), c.hidden_size));
    ASSIGN_OR_RETURN(l.wo, matrix(name("attn_output.weight"), c.hidden_size, c.q_dim()));
    if (c.qkv_bias) {
      ASSIGN_OR_RETURN(l.bq, vec(name("attn_q.bias"), c.q_dim()));
      ASSIGN_OR_RETURN(l.bk, vec(name("attn_k.bias"), c.kv_dim()));
      ASSIGN_OR_RETURN(l.bv, vec(name("attn_v.bias"), c.kv_dim()));
    }
    ASSIGN_OR_RETURN(l.ffn_norm, vec(name("ffn_norm.weight"), c.hidden_size));
    ASSIGN_OR_RETURN(l.w_gate, matrix(name("ffn_gate.weight"), c.intermediate_size, c.hidden_size));
    ASSIGN_OR_RETURN(l.w_up, matrix(name("ffn_up.weight"), c.intermediate_size, c.hidden_size));
    ASSIGN_OR_RETURN(l.w_down, matrix(name("ffn_down.weight"), c.hidden_size, c.intermediate_size));
  }
  return w;
}

}  // namespace

absl::StatusOr<ModelWeights> WeightsFromGguf(const GgufFile& gguf, const ModelConfig& config) {
  GgufSource src(gguf);
  TensorNames names{"token_embd.weight", "output_norm.weight", "output.weight", &GgufLayerName};
  return Assemble(src, names, config);
}

absl::StatusOr<ModelWeights> WeightsFromSafetensors(const SafetensorsCheckpoint& ckpt,
                                                    const ModelConfig& config,
                                                    const std::string& source) {
  SafetensorsSource src(ckpt, source);
  TensorNames names{"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight",
                    &HfLayerName};
  return Assemble(src, names, config);
}

absl::StatusOr<std::vector<float>> RopeFreqFactorsFromGguf(const GgufFile& gguf) {
  const GgufTensor* t = gguf.FindTensor("rope_freqs.weight");
  if (!t) return std::vector<float>{};
  if (t->n_dims != 1) {
    return absl::InvalidArgumentError(StrCat(gguf.path(), ": rope_freqs.weight is not a vector"));
  }
  GgufSource src(gguf);
  ASSIGN_OR_RETURN(RawTensor raw, src.Get("rope_freqs.weight"));
  return ToVector(raw, t->ne[0]);
}

}  // namespace tokenfab
