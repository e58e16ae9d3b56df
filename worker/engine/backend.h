// Backend: runs one batched forward step of the model. Implementations: the
// CPU engine (cpu_backend.h) and a timing model for cluster-scale tests
// (sim_backend.h); later CUDA.
//
// A step takes several sequences at once, each with its own new tokens (a
// prefill chunk or a single decode token), the position of its first new
// token and its block table, which must cover every position up to the last
// new token. The step writes the new tokens' keys and values into those blocks
// and returns logits where asked. Which blocks a sequence owns is the caller's
// business (the batch scheduler's block pool).
//
// Called from one thread (the engine loop).
#ifndef TOKENFAB_WORKER_ENGINE_BACKEND_H_
#define TOKENFAB_WORKER_ENGINE_BACKEND_H_

#include <cstdint>
#include <functional>
#include <span>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "worker/engine/kv_cache.h"
#include "worker/engine/sampler.h"
#include "worker/model/model_config.h"

namespace tokenfab {

enum class LogitsMode {
  kNone,  // a prefill chunk that is not the last: no logits needed
  kLast,  // logits of the last new token (to sample the next)
  kAll,   // logits of every new token (prompt logprobs, tests)
};

// What a backend that samples on its own device needs to choose a
// sequence's next token as engine/sampler.h defines it.
struct DeviceSampling {
  SamplingOptions options;
  std::span<const int32_t> history;  // prompt, then output tokens so far
  int32_t prompt_len = 0;
  uint64_t draw = 0;  // tokens this request has drawn before
};

struct SequenceStep {
  std::span<const int32_t> tokens;       // new tokens, at least one
  int32_t start_position = 0;            // position of tokens[0]
  std::span<const int32_t> block_table;  // block ids of positions 0.. (16 per block)
  LogitsMode logits = LogitsMode::kLast;
  // With LogitsMode::kLast, a backend for which samples_on_device() is true
  // may choose the token itself (StepResult::tokens) instead of returning
  // logits. Null: return logits.
  const DeviceSampling* sampling = nullptr;
  // Where the request's generated tokens begin (its prompt's length), or -1
  // when the caller does not say. A backend whose rounding depends on how a
  // position is computed (the CUDA backend: its prefill and decode attention
  // kernels differ) computes prompt positions one way and generated ones the
  // other however the steps are cut, so that a prompt prefilled on another
  // worker, or in chunks, ends as one step of the whole prompt would.
  int32_t prompt_end = -1;
};

struct StepResult {
  int32_t vocab_size = 0;
  // Logits rows: for each sequence with logits, its rows in order.
  std::vector<float> logits;
  // Per sequence: index of its first logits row, or -1 (LogitsMode::kNone).
  std::vector<int32_t> first_row;
  // A backend that picks tokens itself gives one entry per row here: the
  // token, or -1 for a row whose logits it returned instead (the simulated
  // backend chooses every row and leaves `logits` empty; the CUDA backend
  // chooses the rows with SequenceStep::sampling). The engine records a
  // chosen token with its sampler instead of sampling.
  std::vector<int32_t> tokens;

  const float* Row(int32_t row) const {
    return logits.data() + static_cast<int64_t>(row) * vocab_size;
  }
};

class Backend {
 public:
  virtual ~Backend() = default;

  // Called after each layer of a step, once that layer's keys and values of
  // the step's tokens are in the cache (disaggregated prefill sends them
  // while later layers compute).
  using LayerDone = std::function<void(int32_t layer)>;

  // Runs the batch. An invalid batch (token id outside the vocabulary,
  // positions beyond the context or the block table, unknown block ids) is an
  // InvalidArgument error and changes nothing.
  virtual absl::Status Forward(std::span<const SequenceStep> batch, StepResult* result,
                               const LayerDone& after_layer = nullptr) = 0;

  // KV export and import for disaggregated prefill: the keys and values of
  // `layer` at positions [first, first + count) of a sequence with
  // `block_table`, packed as KvCache::ReadPositions describes. An unknown
  // layer, a block id outside the pool, a table that does not cover the
  // positions or a buffer of the wrong size is InvalidArgument.
  virtual absl::Status ReadKv(int32_t layer, std::span<const int32_t> block_table, int32_t first,
                              int32_t count, std::span<uint8_t> dst) const = 0;
  virtual absl::Status WriteKv(int32_t layer, std::span<const int32_t> block_table, int32_t first,
                               int32_t count, std::span<const uint8_t> src) = 0;
  virtual KvLayout kv_layout() const = 0;

  virtual const ModelConfig& config() const = 0;
  virtual int32_t num_kv_blocks() const = 0;
  virtual std::string_view name() const = 0;
  // True if Forward honours SequenceStep::sampling.
  virtual bool samples_on_device() const { return false; }
};

// Checks shared by backends. ValidateBatch: every sequence has tokens in
// the vocabulary, positions inside the context and its block table, block
// ids inside the pool, and no two new tokens write the same cache slot.
// CheckKvRange: ReadKv / WriteKv's arguments against `layout` and the pool.
// InvalidArgument saying what is wrong.
absl::Status ValidateBatch(std::span<const SequenceStep> batch, const ModelConfig& config,
                           int32_t num_blocks);
absl::Status CheckKvRange(const ModelConfig& config, const KvLayout& layout, int32_t num_blocks,
                          int32_t layer, std::span<const int32_t> block_table, int32_t first,
                          int32_t count, size_t bytes);

}  // namespace tokenfab

#endif  // TOKENFAB_WORKER_ENGINE_BACKEND_H_
