// Request admission: the checks the router makes before a request is routed,
// so bad input is rejected with a clear message before it costs a worker
// anything. Pure functions; any thread.
#ifndef TOKENFAB_SCHEDULER_ADMISSION_H_
#define TOKENFAB_SCHEDULER_ADMISSION_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "tokenfab/v1/generation.pb.h"

namespace tokenfab {

struct ModelLimits {
  int32_t context_length = 0;  // tokens a sequence may hold, prompt included
  int32_t vocab_size = 0;
};

// Largest top-n logprobs a request may ask for (as the OpenAI API).
inline constexpr int32_t kMaxLogprobs = 20;

// The checks that need no model: sampling ranges, max_tokens > 0 when set,
// logprobs.
absl::Status CheckRequestFields(const v1::GenerateRequest& request);

// Checks `request` (sampling ranges, stop token ids, prompt ids) and the
// tokenized prompt length against `limits`. Returns the number of tokens the
// request may generate: max_tokens, or what is left of the context when
// max_tokens is unset. InvalidArgument names the offending field.
absl::StatusOr<int32_t> AdmitRequest(const v1::GenerateRequest& request, int32_t prompt_tokens,
                                     const ModelLimits& limits);

}  // namespace tokenfab

#endif  // TOKENFAB_SCHEDULER_ADMISSION_H_
