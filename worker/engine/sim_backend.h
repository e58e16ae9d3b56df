// The simulated backend: a timing model in place of the forward pass, for
// cluster-scale tests and planning (64 workers on a laptop). Everything
// around it is the real worker: batch scheduler, block pool, prefix cache,
// KV events, KV transport, metrics.
//
// Each step takes the wall time the cost model gives for its shape (the
// backend sleeps it, so a simulated fleet costs almost no CPU) and draws the
// cost model's watts while it runs. Tokens are deterministic: the next token
// is a hash of the last two tokens in the sequence's KV and the position.
// The "KV" of a position is its token id (4 bytes, one layer), so KV moved
// between workers is metadata-sized and a transfer that lost or misplaced
// positions changes the tokens, as it would with a real model.
//
// Called from one thread (the engine loop); the energy counter from any.
#ifndef TOKENFAB_WORKER_ENGINE_SIM_BACKEND_H_
#define TOKENFAB_WORKER_ENGINE_SIM_BACKEND_H_

#include <atomic>
#include <functional>
#include <memory>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/engine/backend.h"

namespace tokenfab {

// What one step computes, for the cost model.
struct SimStepShape {
  // Prompt chunks: (position of the first token, tokens).
  std::vector<std::pair<int32_t, int32_t>> prefill_chunks;
  // One entry per decode token: the sequence's context including it.
  std::vector<int32_t> decode_contexts;
};

struct SimStepCost {
  double seconds = 0;
  double watts = 0;  // drawn while the step runs
};

using SimCostModel = std::function<SimStepCost(const SimStepShape&)>;

struct SimBackendOptions {
  int32_t num_kv_blocks = 0;
  SimCostModel cost;
  // Tokens are drawn from [first_token, vocab_size): above the special and
  // single-byte ids, so a simulated output never stops on an end token.
  int32_t first_token = 256;
};

class SimBackend : public Backend {
 public:
  // `config` gives the vocabulary and context; no weights are read.
  // InvalidArgument for no blocks, no cost model or a vocabulary too small.
  static absl::StatusOr<std::unique_ptr<SimBackend>> Create(const ModelConfig& config,
                                                            SimBackendOptions options);

  absl::Status Forward(std::span<const SequenceStep> batch, StepResult* result,
                       const LayerDone& after_layer = nullptr) override;
  absl::Status ReadKv(int32_t layer, std::span<const int32_t> block_table, int32_t first,
                      int32_t count, std::span<uint8_t> dst) const override;
  absl::Status WriteKv(int32_t layer, std::span<const int32_t> block_table, int32_t first,
                       int32_t count, std::span<const uint8_t> src) override;
  KvLayout kv_layout() const override { return Layout(); }
  const ModelConfig& config() const override { return config_; }
  int32_t num_kv_blocks() const override { return options_.num_kv_blocks; }
  std::string_view name() const override { return "sim"; }

  // Joules drawn by steps so far (step watts x step seconds), and the
  // seconds those steps took.
  double step_joules() const { return step_joules_.load(std::memory_order_relaxed); }
  double step_seconds() const { return step_seconds_.load(std::memory_order_relaxed); }
  // The cost model's figure for a shape (what Forward sleeps).
  SimStepCost Cost(const SimStepShape& shape) const { return options_.cost(shape); }

  // One layer of one int32 "value" per position.
  static KvLayout Layout() { return {1, 1, 1, KvDType::kF16}; }

 private:
  SimBackend(const ModelConfig& config, SimBackendOptions options);
  // Index into kv_ of a position of a sequence with `block_table`.
  static size_t SlotIndex(std::span<const int32_t> block_table, int32_t position);
  int32_t NextToken(std::span<const int32_t> block_table, int32_t position) const;

  const ModelConfig config_;
  const SimBackendOptions options_;
  std::vector<int32_t> kv_;  // token id per (block, slot)
  std::atomic<double> step_joules_{0};
  std::atomic<double> step_seconds_{0};
};

}  // namespace tokenfab

#endif  // TOKENFAB_WORKER_ENGINE_SIM_BACKEND_H_
