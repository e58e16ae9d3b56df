#include "worker/engine/sim_backend.h"

#include <chrono>
#include <cstring>
#include <thread>

#include "common/status_macros.h"
#include "common/strings.h"

namespace tokenfab {
namespace {

uint64_t Mix(uint64_t x) {  // splitmix64's finalizer
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

}  // namespace

absl::StatusOr<std::unique_ptr<SimBackend>> SimBackend::Create(const ModelConfig& config,
                                                               SimBackendOptions options) {
  if (options.num_kv_blocks < 1) {
    return absl::InvalidArgumentError(
        StrCat("the simulated backend needs KV blocks, got ", options.num_kv_blocks));
  }
  if (!options.cost) return absl::InvalidArgumentError("the simulated backend needs a cost model");
  if (options.first_token < 0 || options.first_token >= config.vocab_size) {
    return absl::InvalidArgumentError(
        StrCat("a vocabulary of ", config.vocab_size, " has no tokens from ", options.first_token));
  }
  return std::unique_ptr<SimBackend>(new SimBackend(config, std::move(options)));
}

SimBackend::SimBackend(const ModelConfig& config, SimBackendOptions options)
    : config_(config),
      options_(std::move(options)),
      kv_(static_cast<size_t>(options_.num_kv_blocks) * kKvBlockSize, 0) {}

size_t SimBackend::SlotIndex(std::span<const int32_t> block_table, int32_t position) {
  return static_cast<size_t>(block_table[position / kKvBlockSize]) * kKvBlockSize +
         position % kKvBlockSize;
}

int32_t SimBackend::NextToken(std::span<const int32_t> block_table, int32_t position) const {
  auto at = [&](int32_t p) { return kv_[SlotIndex(block_table, p)]; };
  const uint64_t last = static_cast<uint32_t>(at(position));
  const uint64_t before = position > 0 ? static_cast<uint32_t>(at(position - 1)) : 0;
  const uint64_t h =
      Mix(last * 0x9e3779b97f4a7c15ull ^ Mix(before + 1) ^ (static_cast<uint64_t>(position) << 40));
  const int32_t span = config_.vocab_size - options_.first_token;
  return options_.first_token + static_cast<int32_t>(h % static_cast<uint64_t>(span));
}

absl::Status SimBackend::Forward(std::span<const SequenceStep> batch, StepResult* result,
                                 const LayerDone& after_layer) {
  const auto started = std::chrono::steady_clock::now();
  RETURN_IF_ERROR(ValidateBatch(batch, config_, options_.num_kv_blocks));
  SimStepShape shape;
  for (const SequenceStep& seq : batch) {
    const int32_t n = static_cast<int32_t>(seq.tokens.size());
    // A single new token that wants logits is a decode (a one-token last
    // prompt chunk costs the same).
    if (n == 1 && seq.logits == LogitsMode::kLast) {
      shape.decode_contexts.push_back(seq.start_position + 1);
    } else {
      shape.prefill_chunks.push_back({seq.start_position, n});
    }
    for (int32_t i = 0; i < n; ++i)
      kv_[SlotIndex(seq.block_table, seq.start_position + i)] = seq.tokens[i];
  }
  const SimStepCost cost = options_.cost(shape);
  if (cost.seconds > 0) {
    std::this_thread::sleep_until(started + std::chrono::duration<double>(cost.seconds));
  }
  step_joules_.fetch_add(cost.seconds * cost.watts, std::memory_order_relaxed);
  step_seconds_.fetch_add(cost.seconds, std::memory_order_relaxed);
  if (after_layer) after_layer(0);

  result->vocab_size = config_.vocab_size;
  result->logits.clear();
  result->tokens.clear();
  result->first_row.assign(batch.size(), -1);
  for (size_t s = 0; s < batch.size(); ++s) {
    const SequenceStep& seq = batch[s];
    const int32_t n = static_cast<int32_t>(seq.tokens.size());
    if (seq.logits == LogitsMode::kNone) continue;
    result->first_row[s] = static_cast<int32_t>(result->tokens.size());
    const int32_t from = seq.logits == LogitsMode::kAll ? 0 : n - 1;
    for (int32_t i = from; i < n; ++i) {
      result->tokens.push_back(NextToken(seq.block_table, seq.start_position + i));
    }
  }
  return absl::OkStatus();
}

absl::Status SimBackend::ReadKv(int32_t layer, std::span<const int32_t> block_table, int32_t first,
                                int32_t count, std::span<uint8_t> dst) const {
  RETURN_IF_ERROR(CheckKvRange(config_, Layout(), options_.num_kv_blocks, layer, block_table, first,
                               count, dst.size()));
  for (int32_t i = 0; i < count; ++i) {
    const int32_t p = first + i;
    const int32_t v =
        kv_[static_cast<size_t>(block_table[p / kKvBlockSize]) * kKvBlockSize + p % kKvBlockSize];
    std::memcpy(dst.data() + static_cast<size_t>(i) * sizeof(v), &v, sizeof(v));
  }
  return absl::OkStatus();
}

absl::Status SimBackend::WriteKv(int32_t layer, std::span<const int32_t> block_table, int32_t first,
                                 int32_t count, std::span<const uint8_t> src) {
  RETURN_IF_ERROR(CheckKvRange(config_, Layout(), options_.num_kv_blocks, layer, block_table, first,
                               count, src.size()));
  for (int32_t i = 0; i < count; ++i) {
    int32_t v;
    std::memcpy(&v, src.data() + static_cast<size_t>(i) * sizeof(v), sizeof(v));
    kv_[SlotIndex(block_table, first + i)] = v;
  }
  return absl::OkStatus();
}

}  // namespace tokenfab
