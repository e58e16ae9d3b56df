#include "worker/engine/single_sequence.h"

#include <algorithm>
#include <chrono>
#include <numeric>

#include "common/status_macros.h"
#include "common/strings.h"
#include "worker/engine/kv_cache.h"

namespace tokenfab {

int32_t KvBlocksFor(int32_t tokens) { return (tokens + kKvBlockSize - 1) / kKvBlockSize; }

absl::StatusOr<SingleSequenceResult> RunSingleSequence(
    Backend& backend, std::span<const int32_t> prompt, const SingleSequenceOptions& options,
    const std::function<bool(int32_t)>& on_token) {
  using Clock = std::chrono::steady_clock;
  const int32_t ctx = backend.config().context_length;
  const int32_t n_prompt = static_cast<int32_t>(prompt.size());
  if (n_prompt == 0) return absl::InvalidArgumentError("the prompt is empty");
  if (options.max_tokens <= 0) return absl::InvalidArgumentError("max_tokens must be positive");
  if (static_cast<int64_t>(n_prompt) + options.max_tokens > ctx) {
    return absl::InvalidArgumentError(StrCat("prompt (", n_prompt, " tokens) plus max_tokens (",
                                             options.max_tokens, ") exceeds the context length ",
                                             ctx));
  }
  const int32_t blocks = KvBlocksFor(n_prompt + options.max_tokens);
  if (blocks > backend.num_kv_blocks()) {
    return absl::InvalidArgumentError(StrCat("the sequence needs ", blocks, " KV blocks but the ",
                                             "backend has ", backend.num_kv_blocks()));
  }
  std::vector<int32_t> block_table(blocks);
  std::iota(block_table.begin(), block_table.end(), 0);

  SingleSequenceResult result;
  Sampler sampler(options.sampling, prompt);
  StepResult step;
  const int32_t chunk = std::max(1, options.prefill_chunk_tokens);
  const auto t0 = Clock::now();

  int32_t pos = 0;
  while (pos < n_prompt) {
    const int32_t len = std::min(chunk, n_prompt - pos);
    SequenceStep s{prompt.subspan(pos, len), pos, block_table,
                   pos + len == n_prompt ? LogitsMode::kLast : LogitsMode::kNone};
    s.prompt_end = n_prompt;
    RETURN_IF_ERROR(backend.Forward({&s, 1}, &step));
    pos += len;
  }
  auto t_first = Clock::now();
  while (true) {
    const int32_t token = sampler.Sample({step.Row(step.first_row[0]), static_cast<size_t>(step.vocab_size)});
    if (result.tokens.empty()) t_first = Clock::now();
    result.tokens.push_back(token);
    if (!on_token(token)) {
      result.finish = FinishReason::kCancelled;
      break;
    }
    if (options.stop_token_ids.contains(token)) {
      result.finish = FinishReason::kStop;
      break;
    }
    if (static_cast<int32_t>(result.tokens.size()) >= options.max_tokens) {
      result.finish = FinishReason::kLength;
      break;
    }
    const int32_t next[1] = {token};
    SequenceStep s{next, pos, block_table, LogitsMode::kLast};
    s.prompt_end = n_prompt;
    RETURN_IF_ERROR(backend.Forward({&s, 1}, &step));
    ++pos;
  }
  const auto t_end = Clock::now();
  result.prefill_seconds = std::chrono::duration<double>(t_first - t0).count();
  result.decode_seconds = std::chrono::duration<double>(t_end - t_first).count();
  return result;
}

}  // namespace tokenfab
