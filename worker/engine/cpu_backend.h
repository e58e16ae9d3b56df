// The CPU engine: a Llama-family forward pass over a batch of sequences with
// a paged KV cache, using the SIMD kernels of worker/kernels and a fork-join
// thread pool.
//
// Buffers grow to the largest step seen and are reused: a step allocates
// nothing once the shapes have been seen (results keep their vectors too).
//
// Batch-invariant by construction: every token's computation (norms,
// projections, rotary embedding, attention over its own sequence's cache)
// runs in a fixed order that does not depend on the other tokens in the
// batch, on chunking or on the thread count. A sequence's logits are
// bit-identical alone or batched, prefilled at once, in chunks or decoded
// token by token.
#ifndef TOKENFAB_WORKER_ENGINE_CPU_BACKEND_H_
#define TOKENFAB_WORKER_ENGINE_CPU_BACKEND_H_

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "common/thread_pool.h"
#include "worker/engine/backend.h"
#include "worker/engine/kv_cache.h"
#include "worker/model/model_weights.h"

namespace tokenfab {

struct CpuBackendOptions {
  int32_t threads = 1;
  int32_t num_kv_blocks = 0;
  KvDType kv_dtype = KvDType::kF16;
};

class CpuBackend : public Backend {
 public:
  // `config` and `weights` must outlive the backend.
  static absl::StatusOr<std::unique_ptr<CpuBackend>> Create(const ModelConfig& config,
                                                            const ModelWeights& weights,
                                                            const CpuBackendOptions& options);

  absl::Status Forward(std::span<const SequenceStep> batch, StepResult* result,
                       const LayerDone& after_layer = nullptr) override;
  absl::Status ReadKv(int32_t layer, std::span<const int32_t> block_table, int32_t first,
                      int32_t count, std::span<uint8_t> dst) const override;
  absl::Status WriteKv(int32_t layer, std::span<const int32_t> block_table, int32_t first,
                       int32_t count, std::span<const uint8_t> src) override;
  KvLayout kv_layout() const override { return kv_->layout(); }
  const ModelConfig& config() const override { return config_; }
  int32_t num_kv_blocks() const override { return kv_->num_blocks(); }
  std::string_view name() const override { return "cpu"; }

 private:
  CpuBackend(const ModelConfig& config, const ModelWeights& weights, std::unique_ptr<KvCache> kv,
             int32_t threads);
  void RunLayer(int32_t layer, int64_t n_tokens);

  const ModelConfig& config_;
  const ModelWeights& weights_;
  std::unique_ptr<KvCache> kv_;
  ThreadPool pool_;

  // Per-token bookkeeping of the current step.
  std::vector<int32_t> positions_;
  std::vector<const int32_t*> block_tables_;
  std::vector<int32_t> token_ids_;
  std::vector<int64_t> logit_rows_;  // activation rows whose logits are wanted
  // Activations, [tokens][width] each.
  std::vector<float> x_, xn_, q_, k_, v_, attn_, tmp_, gate_, up_;
  std::vector<float> rope_cos_, rope_sin_;  // [tokens][head_dim / 2]
  std::vector<uint8_t> act_scratch_;
};

}  // namespace tokenfab

#endif  // TOKENFAB_WORKER_ENGINE_CPU_BACKEND_H_
