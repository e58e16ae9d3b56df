// Turns a request's input (raw text, token ids or chat messages) into the
// prompt's token ids, as the router does before routing: chat messages are
// rendered with the model's own template, then tokenized.
#ifndef TOKENFAB_SERVER_PROMPT_TOKENS_H_
#define TOKENFAB_SERVER_PROMPT_TOKENS_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "tokenfab/v1/generation.pb.h"
#include "worker/chat/chat_template.h"
#include "worker/tokenizer/tokenizer.h"

namespace tokenfab {

// Raw text gets the model's default BOS; a rendered chat prompt gets none,
// since templates write the BOS themselves (as vLLM and HF do). Errors:
// empty input, a chat request for a model without a template, or a template
// that rejects the conversation (raise_exception).
absl::StatusOr<std::vector<int32_t>> PromptTokens(const v1::GenerateRequest& request,
                                                  const Tokenizer& tokenizer,
                                                  const ChatTemplate* chat_template);

}  // namespace tokenfab

#endif  // TOKENFAB_SERVER_PROMPT_TOKENS_H_
