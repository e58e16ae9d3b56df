// Parsing of an OpenAI-style streamed completion as it arrives: the
// Server-Sent Events framing (https://html.spec.whatwg.org/#server-sent-events)
// and the JSON of each /v1/completions chunk. Pure functions and a small
// incremental parser, so they are tested without a network.
#ifndef TOKENFAB_SERVER_LOADGEN_OPENAI_STREAM_H_
#define TOKENFAB_SERVER_LOADGEN_OPENAI_STREAM_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace tokenfab::loadgen {

// Splits a byte stream into SSE events and returns each event's data (its
// `data:` lines joined with '\n'). Bytes may arrive cut anywhere, even inside
// a "\r\n". Comments and other fields are skipped; events without data are
// dropped, as the spec says.
class SseParser {
 public:
  std::vector<std::string> Feed(std::string_view bytes);

 private:
  void EndLine();

  std::string line_;
  std::string data_;
  bool has_data_ = false;
  bool last_was_cr_ = false;
  std::vector<std::string> events_;
};

struct CompletionChunk {
  bool done = false;           // the "[DONE]" sentinel
  std::string text;            // choices[0].text (empty for usage-only chunks)
  int32_t prompt_tokens = -1;  // from "usage", -1 if absent or null
  int32_t completion_tokens = -1;
  std::string finish_reason;  // empty while generating
};

// One SSE data payload of a streamed /v1/completions response (also accepts
// chat.completion.chunk deltas). An {"error": ...} payload or malformed JSON
// is an error carrying the server's message.
absl::StatusOr<CompletionChunk> ParseCompletionChunk(std::string_view data);

// The body of a streamed completions request that generates exactly
// `max_tokens` tokens: "ignore_eos" (vLLM's extension, which tokenfab accepts)
// keeps the server from stopping at end-of-sequence, and
// "stream_options.include_usage" asks for the token counts. `extra_json` (an object, may be empty)
// is merged last, so it can add or override fields. InvalidArgument if it is not a JSON object.
absl::StatusOr<std::string> CompletionRequestBody(const std::string& model,
                                                  const std::string& prompt, int32_t max_tokens,
                                                  const std::string& extra_json);

// The first model id of a /v1/models response body.
absl::StatusOr<std::string> FirstModelId(std::string_view models_json);

}  // namespace tokenfab::loadgen

#endif  // TOKENFAB_SERVER_LOADGEN_OPENAI_STREAM_H_
