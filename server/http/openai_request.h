// OpenAI-compatible request bodies (/v1/completions, /v1/chat/completions)
// mapped onto tokenfab.v1.GenerateRequest, with OpenAI's defaults applied
// where they differ from the proto's zero values (temperature 1, top_p 1).
// Checks types and OpenAI's value ranges here so a bad field is a 400 that
// names it; the router then applies the model-dependent checks (context
// length, vocabulary, served model). Pure functions; any thread.
#ifndef TOKENFAB_SERVER_HTTP_OPENAI_REQUEST_H_
#define TOKENFAB_SERVER_HTTP_OPENAI_REQUEST_H_

#include <cstdint>
#include <string_view>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "tokenfab/v1/generation.pb.h"

namespace tokenfab {

enum class OpenAiEndpoint { kCompletions, kChatCompletions };

struct OpenAiRequest {
  OpenAiEndpoint endpoint = OpenAiEndpoint::kCompletions;
  v1::GenerateRequest request;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  // Logprobs the client asked for: -1 for none; else the number of top
  // alternatives per token (completions `logprobs: N`, chat `top_logprobs`).
  // request.logprobs is at least 1 whenever this is >= 0, since the worker
  // reports the chosen token's logprob only together with a top list.
  int32_t logprobs = -1;
};

// Parses and maps a request body. InvalidArgument names the field: invalid
// UTF-8 or JSON, a wrong type, an out-of-range value, or an OpenAI feature
// tokenfab does not offer (n > 1, best_of > 1, echo, suffix, logit_bias,
// tools, response_format other than text, several prompts in one request).
absl::StatusOr<OpenAiRequest> ParseOpenAiRequest(OpenAiEndpoint endpoint, std::string_view body);
absl::StatusOr<OpenAiRequest> ParseOpenAiJson(OpenAiEndpoint endpoint,
                                              const nlohmann::ordered_json& body);

}  // namespace tokenfab

#endif  // TOKENFAB_SERVER_HTTP_OPENAI_REQUEST_H_
