#include "scheduler/admission.h"

#include <cmath>

#include "common/strings.h"

namespace tokenfab {
namespace {

absl::Status Invalid(std::string_view field, std::string_view why) {
  return absl::InvalidArgumentError(StrCat(field, " ", why));
}

absl::Status CheckRange(std::string_view field, float v, float lo, float hi) {
  if (!std::isfinite(v) || v < lo || v > hi) {
    return Invalid(field, StrCat("must be between ", lo, " and ", hi, ", got ", v));
  }
  return absl::OkStatus();
}

absl::Status CheckSampling(const v1::SamplingParams& s) {
  if (!std::isfinite(s.temperature()) || s.temperature() < 0) {
    return Invalid("temperature", StrCat("must be >= 0, got ", s.temperature()));
  }
  if (s.top_k() < 0) return Invalid("top_k", StrCat("must be >= 0, got ", s.top_k()));
  if (auto st = CheckRange("top_p", s.top_p(), 0, 1); !st.ok()) return st;
  if (auto st = CheckRange("min_p", s.min_p(), 0, 1); !st.ok()) return st;
  if (auto st = CheckRange("repetition_penalty", s.repetition_penalty(), 0, 100); !st.ok()) return st;
  if (auto st = CheckRange("presence_penalty", s.presence_penalty(), -2, 2); !st.ok()) return st;
  if (auto st = CheckRange("frequency_penalty", s.frequency_penalty(), -2, 2); !st.ok()) return st;
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckRequestFields(const v1::GenerateRequest& request) {
  if (auto st = CheckSampling(request.sampling()); !st.ok()) return st;
  if (request.has_max_tokens() && request.max_tokens() <= 0) {
    return Invalid("max_tokens", StrCat("must be positive, got ", request.max_tokens()));
  }
  if (request.logprobs() < 0 || request.logprobs() > kMaxLogprobs) {
    return Invalid("logprobs", StrCat("must be between 0 and ", kMaxLogprobs, ", got ",
                                      request.logprobs()));
  }
  return absl::OkStatus();
}

absl::StatusOr<int32_t> AdmitRequest(const v1::GenerateRequest& request, int32_t prompt_tokens,
                                     const ModelLimits& limits) {
  if (auto st = CheckRequestFields(request); !st.ok()) return st;
  for (int32_t id : request.stop_token_ids()) {
    if (id < 0 || id >= limits.vocab_size) {
      return Invalid("stop_token_ids", StrCat("contains ", id, ", outside the vocabulary of ",
                                                    limits.vocab_size, " tokens"));
    }
  }
  if (request.has_prompt_ids()) {
    for (int32_t id : request.prompt_ids().ids()) {
      if (id < 0 || id >= limits.vocab_size) {
        return Invalid("prompt_ids", StrCat("contains ", id, ", outside the vocabulary of ",
                                                  limits.vocab_size, " tokens"));
      }
    }
  }
  if (prompt_tokens <= 0) return Invalid("prompt", "is empty");
  if (prompt_tokens >= limits.context_length) {
    return Invalid("prompt", StrCat("has ", prompt_tokens,
                                          " tokens, but the model's context length is ",
                                          limits.context_length, " tokens"));
  }
  const int32_t room = limits.context_length - prompt_tokens;
  if (!request.has_max_tokens()) return room;
  if (request.max_tokens() > room) {
    return Invalid("max_tokens",
                   StrCat("is ", request.max_tokens(), " but the prompt has ", prompt_tokens,
                                " tokens and the model's context length is ",
                                limits.context_length, " (at most ", room, " can be generated)"));
  }
  return request.max_tokens();
}

}  // namespace tokenfab
