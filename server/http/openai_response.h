// GenerateResponse messages shaped as OpenAI response objects: the streamed
// chunks (server-sent events) and the one non-streamed object, for text and
// chat completions. Not thread-safe; each request's encoder or builder is
// used by one connection at a time.
#ifndef TOKENFAB_SERVER_HTTP_OPENAI_RESPONSE_H_
#define TOKENFAB_SERVER_HTTP_OPENAI_RESPONSE_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "google/protobuf/repeated_ptr_field.h"
#include "nlohmann/json.hpp"
#include "server/http/openai_request.h"
#include "tokenfab/v1/generation.pb.h"

namespace tokenfab {

struct ResponseContext {
  OpenAiEndpoint endpoint = OpenAiEndpoint::kCompletions;
  std::string id;  // "cmpl-..." or "chatcmpl-..."
  int64_t created = 0;  // Unix seconds
  std::string model;
  int32_t logprobs = -1;  // top alternatives to report per token; -1: no logprobs
  bool include_usage = false;
};

// "cmpl-<request id>" or "chatcmpl-<request id>".
std::string ResponseId(OpenAiEndpoint endpoint, std::string_view request_id);

// Serializes without throwing: bytes that are not UTF-8 (a token that is half
// a character, in logprobs) become U+FFFD.
std::string DumpJson(const nlohmann::ordered_json& json);
// "data: <json>\n\n"
std::string SseEvent(const nlohmann::ordered_json& json);
inline constexpr std::string_view kSseDone = "data: [DONE]\n\n";

// "stop", "length", or null (unfinished, cancelled, error).
nlohmann::ordered_json FinishReasonJson(v1::FinishReason reason);
// {prompt_tokens, completion_tokens, total_tokens, prompt_tokens_details{cached_tokens}}
nlohmann::ordered_json UsageJson(const v1::Usage& usage);

using LogprobList = google::protobuf::RepeatedPtrField<v1::TokenLogprobs>;
// Completions: {tokens, token_logprobs, top_logprobs, text_offset}; offsets
// count bytes of generated text, continuing from *text_offset, which advances.
nlohmann::ordered_json CompletionLogprobsJson(const LogprobList& logprobs, int32_t top_n,
                                              int64_t* text_offset);
// Chat: {content: [{token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}]}.
nlohmann::ordered_json ChatLogprobsJson(const LogprobList& logprobs, int32_t top_n);

// A streamed response, one GenerateResponse at a time.
class OpenAiStreamEncoder {
 public:
  explicit OpenAiStreamEncoder(ResponseContext context) : ctx_(std::move(context)) {}

  // Events to send before any token: chat's first chunk, which carries
  // delta.role = "assistant"; nothing for completions.
  std::string Begin();
  // The events for one response; empty when it carries nothing to show (half
  // a UTF-8 character). After the final response with STOP or LENGTH: its
  // chunk with finish_reason, the usage chunk (include_usage) and [DONE];
  // with ERROR: an error event and [DONE]; with CANCELLED: just the text
  // chunk, since a cancelled stream simply ends.
  std::string Encode(const v1::GenerateResponse& response);

  const ResponseContext& context() const { return ctx_; }

 private:
  nlohmann::ordered_json Chunk(nlohmann::ordered_json choice) const;

  ResponseContext ctx_;
  int64_t text_offset_ = 0;
};

// A non-streamed response: Add every GenerateResponse, then Build.
class OpenAiResponseBuilder {
 public:
  explicit OpenAiResponseBuilder(ResponseContext context) : ctx_(std::move(context)) {}

  void Add(const v1::GenerateResponse& response);
  // The "text_completion" or "chat.completion" object.
  nlohmann::ordered_json Build() const;

  v1::FinishReason finish_reason() const { return finish_reason_; }

 private:
  ResponseContext ctx_;
  std::string text_;
  LogprobList logprobs_;
  v1::FinishReason finish_reason_ = v1::FINISH_REASON_UNSPECIFIED;
  v1::Usage usage_;
};

}  // namespace tokenfab

#endif  // TOKENFAB_SERVER_HTTP_OPENAI_RESPONSE_H_
