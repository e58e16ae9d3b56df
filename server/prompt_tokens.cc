#include "server/prompt_tokens.h"

#include <string_view>

#include "common/status_macros.h"
#include "common/strings.h"
#include "nlohmann/json.hpp"

namespace tokenfab {
namespace {

// The roles chat templates know. "developer" is OpenAI's newer name for the
// system role, which templates do not know; anything else is refused rather
// than rendered in a way the model was never trained on.
absl::StatusOr<std::string_view> TemplateRole(std::string_view role, int index) {
  for (std::string_view known : {"system", "user", "assistant", "tool"}) {
    if (role == known) return known;
  }
  if (role == "developer") return std::string_view("system");
  return absl::InvalidArgumentError(StrCat("messages[", index, "].role must be one of system, developer, ",
                                           "user, assistant, tool; got \"", role, "\""));
}

}  // namespace

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
      for (int i = 0; i < request.chat().messages_size(); ++i) {
        const v1::ChatMessage& m = request.chat().messages(i);
        ASSIGN_OR_RETURN(std::string_view role, TemplateRole(m.role(), i));
        messages.push_back({{"role", role}, {"content", m.content()}});
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
