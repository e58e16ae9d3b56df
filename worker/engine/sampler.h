// Chooses each next token from the model's logits.
//
// Order (as vLLM): repetition penalty (over prompt and output tokens),
// presence and frequency penalties (over output tokens), then greedy argmax
// when temperature is 0; otherwise temperature, top-k, top-p, min-p, and a
// draw from the remaining distribution with the request's own generator.
// Ties go to the lower token id, so greedy decoding is deterministic, and the
// same seed gives the same tokens.
//
// One Sampler per sequence; not thread-safe.
#ifndef TOKENFAB_WORKER_ENGINE_SAMPLER_H_
#define TOKENFAB_WORKER_ENGINE_SAMPLER_H_

#include <cstdint>
#include <random>
#include <span>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"

namespace tokenfab {

struct SamplingOptions {
  float temperature = 0.0f;  // 0: greedy
  int32_t top_k = 0;         // 0: off
  float top_p = 1.0f;        // 1 (or 0): off
  float min_p = 0.0f;        // 0: off
  float repetition_penalty = 1.0f;  // 1 (or 0): off
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  uint64_t seed = 0;
};

class Sampler {
 public:
  Sampler(const SamplingOptions& options, std::span<const int32_t> prompt_tokens);

  // Picks the next token from `logits` (vocab_size values) and records it as
  // generated, for the penalties of later steps.
  int32_t Sample(std::span<const float> logits);

  // Records a token generated elsewhere (e.g. before a migration).
  void Accept(int32_t token);

 private:
  SamplingOptions options_;
  std::mt19937_64 rng_;
  absl::flat_hash_set<int32_t> seen_;                 // prompt and output tokens
  absl::flat_hash_map<int32_t, int32_t> out_counts_;  // output token -> count
  std::vector<float> work_;
  std::vector<std::pair<float, int32_t>> candidates_;
  std::vector<double> probs_;
};

// log-softmax of `logits` for the top `n` tokens (highest first, ties by id),
// plus the log-probability of `chosen`. Used for OpenAI-style logprobs.
struct TokenLogprobValue {
  int32_t token;
  float logprob;
};
std::vector<TokenLogprobValue> TopLogprobs(std::span<const float> logits, int32_t n);
float TokenLogprob(std::span<const float> logits, int32_t token);

}  // namespace tokenfab

#endif  // TOKENFAB_WORKER_ENGINE_SAMPLER_H_
