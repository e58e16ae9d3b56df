// Runs one sequence alone on a backend: prefill in chunks, then decode token
// by token until a stop token, the token limit or the caller says stop. This
// is the engine path of the command-line tools (`tokenfab generate`) and of
// the benchmarks; serving many sequences at once goes through the batch
// scheduler instead, over the same Backend.
#ifndef TOKENFAB_WORKER_ENGINE_SINGLE_SEQUENCE_H_
#define TOKENFAB_WORKER_ENGINE_SINGLE_SEQUENCE_H_

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "worker/engine/backend.h"
#include "worker/engine/sampler.h"

namespace tokenfab {

struct SingleSequenceOptions {
  int32_t max_tokens = 0;  // > 0
  SamplingOptions sampling;
  absl::flat_hash_set<int32_t> stop_token_ids;  // generation ends after one of these
  int32_t prefill_chunk_tokens = 512;
};

enum class FinishReason { kStop, kLength, kCancelled };

struct SingleSequenceResult {
  std::vector<int32_t> tokens;  // generated tokens, a final stop token included
  FinishReason finish = FinishReason::kLength;
  double prefill_seconds = 0;  // prompt to first token
  double decode_seconds = 0;   // the rest
};

// The KV blocks a sequence of `tokens` positions needs.
int32_t KvBlocksFor(int32_t tokens);

// Uses KV blocks 0..KvBlocksFor(prompt + max_tokens)-1 of `backend`, which
// must have that many. `on_token` sees each generated token as it comes;
// returning false cancels.
absl::StatusOr<SingleSequenceResult> RunSingleSequence(
    Backend& backend, std::span<const int32_t> prompt, const SingleSequenceOptions& options,
    const std::function<bool(int32_t)>& on_token);

}  // namespace tokenfab

#endif  // TOKENFAB_WORKER_ENGINE_SINGLE_SEQUENCE_H_
