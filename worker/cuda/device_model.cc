#include "worker/cuda/device_model.h"

#include <cstring>

#include "common/status_macros.h"
#include "common/strings.h"
#include "worker/kernels/dequantize.h"

namespace tokenfab::cuda {
namespace {

// Host staging: rows are dequantized into `floats`, rounded into the pinned
// `staging` buffer and copied in chunks; the copy of one chunk is awaited
// before its staging is refilled.
class Uploader {
 public:
  explicit Uploader(cudaStream_t stream) : stream_(stream) {}

  absl::Status Init() {
    ASSIGN_OR_RETURN(staging_, PinnedBuffer<uint16_t>::Allocate(kChunk, "pinned upload buffer"));
    return absl::OkStatus();
  }

  // Copies the rows of `m` to dst (m.rows x m.cols bf16).
  absl::Status Matrix(const WeightMatrix& m, bf16* dst) {
    if (static_cast<size_t>(m.cols) > kChunk) {
      return absl::InvalidArgumentError(
          StrCat("a weight row of ", m.cols, " elements is too long"));
    }
    row_.resize(m.cols);
    const int64_t rows_per_chunk = static_cast<int64_t>(kChunk) / m.cols;
    for (int64_t r0 = 0; r0 < m.rows; r0 += rows_per_chunk) {
      const int64_t rows = std::min(rows_per_chunk, m.rows - r0);
      CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));  // staging is free again
      for (int64_t r = 0; r < rows; ++r) {
        uint16_t* out = staging_.get() + r * m.cols;
        if (m.type == DType::kBF16) {  // already the device's format
          std::memcpy(out, m.row(r0 + r), sizeof(uint16_t) * m.cols);
          continue;
        }
        DequantizeRow(m.type, m.row(r0 + r), row_.data(), m.cols);
        for (int64_t c = 0; c < m.cols; ++c) out[c] = FloatToBf16Bits(row_[c]);
      }
      CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(dst + r0 * m.cols, staging_.get(),
                                           sizeof(uint16_t) * rows * m.cols, cudaMemcpyHostToDevice,
                                           stream_));
    }
    return absl::OkStatus();
  }

  absl::Status Floats(const std::vector<float>& v, float* dst) {
    CUDA_RETURN_IF_ERROR(
        cudaMemcpy(dst, v.data(), sizeof(float) * v.size(), cudaMemcpyHostToDevice));
    return absl::OkStatus();
  }

 private:
  static constexpr size_t kChunk = 16u << 20;  // elements
  cudaStream_t stream_;
  PinnedBuffer<uint16_t> staging_;
  std::vector<float> row_;
};

absl::StatusOr<DeviceBuffer<bf16>> Alloc(int64_t elems, const char* what, size_t* bytes) {
  *bytes += sizeof(bf16) * static_cast<size_t>(elems);
  return DeviceBuffer<bf16>::Allocate(static_cast<size_t>(elems), what);
}

absl::StatusOr<DeviceBuffer<float>> UploadFloats(const std::vector<float>& v, const char* what,
                                                 Uploader& up) {
  ASSIGN_OR_RETURN(DeviceBuffer<float> b, DeviceBuffer<float>::Allocate(v.size(), what));
  RETURN_IF_ERROR(up.Floats(v, b.get()));
  return b;
}

}  // namespace

uint16_t FloatToBf16Bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);  // NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

absl::StatusOr<DeviceModel> DeviceModel::Upload(const ModelConfig& c, const ModelWeights& w,
                                                cudaStream_t stream) {
  if (w.layers.size() != static_cast<size_t>(c.num_layers) || w.token_embedding.data == nullptr) {
    return absl::InvalidArgumentError("the CUDA backend needs the model's weights loaded");
  }
  Uploader up(stream);
  RETURN_IF_ERROR(up.Init());
  DeviceModel m;
  const int64_t hidden = c.hidden_size, qd = c.q_dim(), kvd = c.kv_dim(), ff = c.intermediate_size;
  ASSIGN_OR_RETURN(m.embedding, Alloc(int64_t{c.vocab_size} * hidden, "embedding", &m.bytes));
  RETURN_IF_ERROR(up.Matrix(w.token_embedding, m.embedding.get()));
  for (int32_t l = 0; l < c.num_layers; ++l) {
    const LayerWeights& lw = w.layers[l];
    DeviceLayer d;
    ASSIGN_OR_RETURN(d.attn_norm, UploadFloats(lw.attn_norm, "attn_norm", up));
    ASSIGN_OR_RETURN(d.ffn_norm, UploadFloats(lw.ffn_norm, "ffn_norm", up));
    if (!lw.bq.empty() || !lw.bk.empty() || !lw.bv.empty()) {
      if (lw.bq.size() != static_cast<size_t>(qd) || lw.bk.size() != static_cast<size_t>(kvd) ||
          lw.bv.size() != static_cast<size_t>(kvd)) {
        return absl::InvalidArgumentError(
            StrCat("layer ", l, ": the CUDA backend needs q, k and v biases together"));
      }
      std::vector<float> bias(lw.bq);
      bias.insert(bias.end(), lw.bk.begin(), lw.bk.end());
      bias.insert(bias.end(), lw.bv.begin(), lw.bv.end());
      ASSIGN_OR_RETURN(d.qkv_bias, UploadFloats(bias, "qkv bias", up));
    }
    ASSIGN_OR_RETURN(d.wqkv, Alloc((qd + 2 * kvd) * hidden, "wqkv", &m.bytes));
    RETURN_IF_ERROR(up.Matrix(lw.wq, d.wqkv.get()));
    RETURN_IF_ERROR(up.Matrix(lw.wk, d.wqkv.get() + qd * hidden));
    RETURN_IF_ERROR(up.Matrix(lw.wv, d.wqkv.get() + (qd + kvd) * hidden));
    ASSIGN_OR_RETURN(d.wo, Alloc(hidden * qd, "wo", &m.bytes));
    RETURN_IF_ERROR(up.Matrix(lw.wo, d.wo.get()));
    ASSIGN_OR_RETURN(d.w_gate_up, Alloc(2 * ff * hidden, "w_gate_up", &m.bytes));
    RETURN_IF_ERROR(up.Matrix(lw.w_gate, d.w_gate_up.get()));
    RETURN_IF_ERROR(up.Matrix(lw.w_up, d.w_gate_up.get() + ff * hidden));
    ASSIGN_OR_RETURN(d.w_down, Alloc(hidden * ff, "w_down", &m.bytes));
    RETURN_IF_ERROR(up.Matrix(lw.w_down, d.w_down.get()));
    m.layers.push_back(std::move(d));
  }
  ASSIGN_OR_RETURN(m.output_norm, UploadFloats(w.output_norm, "output_norm", up));
  if (w.output.data == w.token_embedding.data) {
    m.lm_head = m.embedding.get();
  } else {
    ASSIGN_OR_RETURN(m.lm_head_storage, Alloc(int64_t{c.vocab_size} * hidden, "lm_head", &m.bytes));
    RETURN_IF_ERROR(up.Matrix(w.output, m.lm_head_storage.get()));
    m.lm_head = m.lm_head_storage.get();
  }
  ASSIGN_OR_RETURN(m.inv_freq, UploadFloats(c.rope_inv_freq, "rope inv_freq", up));
  CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
  return m;
}

}  // namespace tokenfab::cuda
