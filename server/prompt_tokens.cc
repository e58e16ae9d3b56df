#include "server/prompt_tokens.h"

#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace tokenfab {

absl::StatusOr<std::vector<int32_t>> PromptTokens(const v1::GenerateRequest& request,
                                                  const Tokenizer& tokenizer,
                                                  const ChatTemplate* chat_template) {
  switch (request.input_case()) {
    case v1::GenerateRequest::kPrompt:
      if (request.prompt().empty()) return absl::InvalidArgumentError("prompt is empty");
      return tokenizer.Encode(request.prompt(), tokenizer.add_bos_default());
    case v1::GenerateRequest::kPromptIds:
      return std::vector<int32_t>(request.prompt_ids().ids().begin(),
                                  request.prompt_ids().ids().end());
    case v1::GenerateRequest::kChat: {
      if (chat_template == nullptr) {
        return absl::FailedPreconditionError("this model has no chat template");
      }
      if (request.chat().messages().empty()) {
        return absl::InvalidArgumentError("chat has no messages");
      }
      nlohmann::ordered_json messages = nlohmann::ordered_json::array();
      for (const v1::ChatMessage& m : request.chat().messages()) {
        messages.push_back({{"role", m.role()}, {"content", m.content()}});
      }
      ChatRenderOptions options;
      options.add_generation_prompt = true;
      options.bos_token = tokenizer.bos_text();
      options.eos_token = tokenizer.eos_text();
      ASSIGN_OR_RETURN(std::string text, RenderChat(*chat_template, messages, options));
      return tokenizer.Encode(text, /*add_bos=*/false);
    }
    case v1::GenerateRequest::INPUT_NOT_SET:
      break;
  }
  return absl::InvalidArgumentError("the request has no prompt");
}

}  // namespace tokenfab
