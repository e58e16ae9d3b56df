#include "worker/engine/cpu_backend.h"

#include <cmath>

#include "common/status_macros.h"
#include "common/strings.h"
#include "worker/kernels/attention.h"
#include "worker/kernels/dequantize.h"
#include "worker/kernels/matmul.h"
#include "worker/kernels/ops.h"

namespace tokenfab {
namespace {

void Resize(std::vector<float>& v, int64_t n) {
  if (static_cast<int64_t>(v.size()) < n) v.resize(n);
}

}  // namespace

absl::StatusOr<std::unique_ptr<CpuBackend>> CpuBackend::Create(const ModelConfig& config,
                                                               const ModelWeights& weights,
                                                               const CpuBackendOptions& options) {
  if (options.threads < 1 || options.threads > 1024) {
    return absl::InvalidArgumentError(
        StrCat("threads must be between 1 and 1024, got ", options.threads));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<KvCache> kv,
                   KvCache::Create(config, {options.num_kv_blocks, options.kv_dtype}));
  return std::unique_ptr<CpuBackend>(
      new CpuBackend(config, weights, std::move(kv), options.threads));
}

CpuBackend::CpuBackend(const ModelConfig& config, const ModelWeights& weights,
                       std::unique_ptr<KvCache> kv, int32_t threads)
    : config_(config), weights_(weights), kv_(std::move(kv)), pool_(threads) {}

absl::Status CpuBackend::ReadKv(int32_t layer, std::span<const int32_t> block_table, int32_t first,
                                int32_t count, std::span<uint8_t> dst) const {
  RETURN_IF_ERROR(CheckKvRange(config_, kv_->layout(), kv_->num_blocks(), layer, block_table,
                               first, count, dst.size()));
  kv_->ReadPositions(layer, block_table, first, count, dst.data());
  return absl::OkStatus();
}

absl::Status CpuBackend::WriteKv(int32_t layer, std::span<const int32_t> block_table, int32_t first,
                                 int32_t count, std::span<const uint8_t> src) {
  RETURN_IF_ERROR(CheckKvRange(config_, kv_->layout(), kv_->num_blocks(), layer, block_table,
                               first, count, src.size()));
  kv_->WritePositions(layer, block_table, first, count, src.data());
  return absl::OkStatus();
}

absl::Status CpuBackend::Forward(std::span<const SequenceStep> batch, StepResult* result,
                                 const LayerDone& after_layer) {
  RETURN_IF_ERROR(ValidateBatch(batch, config_, kv_->num_blocks()));
  const ModelConfig& c = config_;
  int64_t n = 0;
  for (const SequenceStep& seq : batch) n += static_cast<int64_t>(seq.tokens.size());

  positions_.resize(n);
  block_tables_.resize(n);
  Resize(x_, n * c.hidden_size);
  Resize(xn_, n * c.hidden_size);
  Resize(tmp_, n * c.hidden_size);
  Resize(q_, n * c.q_dim());
  Resize(attn_, n * c.q_dim());
  Resize(k_, n * c.kv_dim());
  Resize(v_, n * c.kv_dim());
  Resize(gate_, n * c.intermediate_size);
  Resize(up_, n * c.intermediate_size);
  const int32_t half = c.head_dim / 2;
  Resize(rope_cos_, n * half);
  Resize(rope_sin_, n * half);

  {
    int64_t t = 0;
    for (const SequenceStep& seq : batch) {
      for (size_t i = 0; i < seq.tokens.size(); ++i, ++t) {
        positions_[t] = seq.start_position + static_cast<int32_t>(i);
        block_tables_[t] = seq.block_table.data();
      }
    }
  }
  token_ids_.clear();
  for (const SequenceStep& seq : batch)
    token_ids_.insert(token_ids_.end(), seq.tokens.begin(), seq.tokens.end());

  pool_.ParallelFor(n, 4, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      DequantizeRow(weights_.token_embedding.type, weights_.token_embedding.row(token_ids_[t]),
                    x_.data() + t * c.hidden_size, c.hidden_size);
      RopeAngles(positions_[t], c.rope_inv_freq.data(), half, rope_cos_.data() + t * half,
                 rope_sin_.data() + t * half);
    }
  });

  for (int32_t layer = 0; layer < c.num_layers; ++layer) {
    RunLayer(layer, n);
    if (after_layer) after_layer(layer);
  }

  // Logits for the rows asked for.
  std::vector<int64_t>& rows = logit_rows_;
  rows.clear();
  result->first_row.assign(batch.size(), -1);
  {
    int64_t t = 0;
    for (size_t s = 0; s < batch.size(); ++s) {
      const int64_t len = static_cast<int64_t>(batch[s].tokens.size());
      if (batch[s].logits != LogitsMode::kNone) {
        result->first_row[s] = static_cast<int32_t>(rows.size());
        const int64_t from = batch[s].logits == LogitsMode::kAll ? 0 : len - 1;
        for (int64_t i = from; i < len; ++i) rows.push_back(t + i);
      }
      t += len;
    }
  }
  const int64_t r = static_cast<int64_t>(rows.size());
  result->vocab_size = c.vocab_size;
  result->logits.resize(r * c.vocab_size);
  if (r == 0) return absl::OkStatus();
  pool_.ParallelFor(r, 4, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      RmsNorm(x_.data() + rows[i] * c.hidden_size, weights_.output_norm.data(), c.hidden_size,
              c.rms_norm_eps, xn_.data() + i * c.hidden_size);
    }
  });
  MatMul(weights_.output, xn_.data(), c.hidden_size, r, result->logits.data(), c.vocab_size, pool_,
         &act_scratch_);
  return absl::OkStatus();
}

void CpuBackend::RunLayer(int32_t layer, int64_t n) {
  const ModelConfig& c = config_;
  const LayerWeights& w = weights_.layers[layer];
  const int64_t hidden = c.hidden_size, qd = c.q_dim(), kvd = c.kv_dim(), ff = c.intermediate_size;
  const int32_t half = c.head_dim / 2;

  pool_.ParallelFor(n, 4, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      RmsNorm(x_.data() + t * hidden, w.attn_norm.data(), hidden, c.rms_norm_eps,
              xn_.data() + t * hidden);
    }
  });
  const MatMulOutput qkv[] = {{&w.wq, q_.data(), qd}, {&w.wk, k_.data(), kvd},
                              {&w.wv, v_.data(), kvd}};
  MatMulShared(qkv, xn_.data(), hidden, n, pool_, &act_scratch_);

  // Biases, rotary embedding, then this layer's keys/values into the cache.
  pool_.ParallelFor(n, 4, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      float* q = q_.data() + t * qd;
      float* k = k_.data() + t * kvd;
      float* v = v_.data() + t * kvd;
      if (!w.bq.empty()) {
        AddInPlace(q, w.bq.data(), qd);
        AddInPlace(k, w.bk.data(), kvd);
        AddInPlace(v, w.bv.data(), kvd);
      }
      const float* cs = rope_cos_.data() + t * half;
      const float* sn = rope_sin_.data() + t * half;
      ApplyRope(q, c.num_heads, c.head_dim, cs, sn, c.rope_style);
      ApplyRope(k, c.num_kv_heads, c.head_dim, cs, sn, c.rope_style);
      const int32_t pos = positions_[t];
      kv_->Write(layer, block_tables_[t][pos / kKvBlockSize], pos % kKvBlockSize, k, v);
    }
  });

  // Attention: one task per (token, KV head) for the query heads sharing it,
  // so each K/V row is converted once for the group; per (token, query head)
  // when too few tokens would leave a thread idle. A head's result does not
  // depend on the heads it is computed with.
  const KvLayerView view = kv_->LayerView(layer);
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  const int32_t group = c.num_heads / c.num_kv_heads;
  const int32_t heads_per_task = n * c.num_kv_heads >= 4 * pool_.num_threads() ? group : 1;
  const int32_t tasks_per_token = c.num_heads / heads_per_task;
  pool_.ParallelFor(n * tasks_per_token, 1, [&](int64_t b, int64_t e) {
    thread_local std::vector<float> scratch;
    for (int64_t i = b; i < e; ++i) {
      const int64_t t = i / tasks_per_token;
      const int32_t h0 = static_cast<int32_t>(i % tasks_per_token) * heads_per_task;
      const int32_t n_ctx = positions_[t] + 1;
      const int64_t need = AttendGroupScratchFloats(heads_per_task, n_ctx, view);
      if (static_cast<int64_t>(scratch.size()) < need) scratch.resize(need);
      const int64_t off = t * qd + static_cast<int64_t>(h0) * c.head_dim;
      AttendGroup(q_.data() + off, heads_per_task, h0 / group, block_tables_[t], n_ctx, view, scale,
                  scratch.data(), attn_.data() + off);
    }
  });
  MatMul(w.wo, attn_.data(), qd, n, tmp_.data(), hidden, pool_, &act_scratch_);

  pool_.ParallelFor(n, 4, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      AddInPlace(x_.data() + t * hidden, tmp_.data() + t * hidden, hidden);
      RmsNorm(x_.data() + t * hidden, w.ffn_norm.data(), hidden, c.rms_norm_eps,
              xn_.data() + t * hidden);
    }
  });
  const MatMulOutput gate_up[] = {{&w.w_gate, gate_.data(), ff}, {&w.w_up, up_.data(), ff}};
  MatMulShared(gate_up, xn_.data(), hidden, n, pool_, &act_scratch_);
  pool_.ParallelFor(n, 4, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      SiluMul(gate_.data() + t * ff, up_.data() + t * ff, ff, gate_.data() + t * ff);
    }
  });
  MatMul(w.w_down, gate_.data(), ff, n, tmp_.data(), hidden, pool_, &act_scratch_);
  pool_.ParallelFor(n, 4, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t)
      AddInPlace(x_.data() + t * hidden, tmp_.data() + t * hidden, hidden);
  });
}

}  // namespace tokenfab
