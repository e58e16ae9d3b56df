#include "worker/chat/chat_template.h"

#include <utility>

#include "absl/status/status.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "worker/chat/jinja_ast.h"
#include "worker/chat/jinja_interpreter.h"
#include "worker/chat/jinja_json.h"
#include "worker/chat/jinja_parser.h"

namespace tokenfab {
namespace {

absl::Status Prefixed(const absl::Status& status, std::string_view what) {
  if (jinja::IsRaisedByTemplate(status)) return status;
  return absl::Status(status.code(), StrCat(what, ": ", status.message()));
}

}  // namespace

ChatTemplate::ChatTemplate(std::unique_ptr<const jinja::Program> program, Options options)
    : program_(std::move(program)), options_(std::move(options)) {}

ChatTemplate::~ChatTemplate() = default;

absl::StatusOr<std::unique_ptr<ChatTemplate>> ChatTemplate::Create(std::string_view source) {
  return Create(source, Options{});
}

absl::StatusOr<std::unique_ptr<ChatTemplate>> ChatTemplate::Create(std::string_view source,
                                                                   Options options) {
  absl::StatusOr<std::unique_ptr<jinja::Program>> program = jinja::ParseTemplate(source);
  if (!program.ok()) return Prefixed(program.status(), "chat template syntax error");
  return std::unique_ptr<ChatTemplate>(new ChatTemplate(std::move(*program), std::move(options)));
}

absl::StatusOr<std::string> ChatTemplate::Render(const nlohmann::ordered_json& context) const {
  if (!context.is_object())
    return absl::InvalidArgumentError("chat template context must be a JSON object");
  ASSIGN_OR_RETURN(jinja::Value value, jinja::ValueFromJson(context));
  absl::StatusOr<std::string> out = jinja::RenderProgram(*program_, value, options_.now);
  if (!out.ok()) return Prefixed(out.status(), "chat template error");
  return out;
}

absl::StatusOr<std::string> ChatTemplate::Render(const nlohmann::json& context) const {
  return Render(nlohmann::ordered_json(context));
}

absl::StatusOr<std::string> RenderChat(const ChatTemplate& tmpl,
                                       const nlohmann::ordered_json& messages,
                                       const ChatRenderOptions& options) {
  if (!messages.is_array()) return absl::InvalidArgumentError("messages must be a JSON array");
  if (!options.extra.is_object()) return absl::InvalidArgumentError("extra must be a JSON object");
  nlohmann::ordered_json context = nlohmann::ordered_json::object();
  context["messages"] = messages;
  context["tools"] = nullptr;
  context["documents"] = nullptr;
  context["add_generation_prompt"] = options.add_generation_prompt;
  context["bos_token"] = options.bos_token;
  context["eos_token"] = options.eos_token;
  for (auto it = options.extra.begin(); it != options.extra.end(); ++it)
    context[it.key()] = it.value();
  return tmpl.Render(context);
}

absl::StatusOr<std::string> RenderChat(const ChatTemplate& tmpl, const nlohmann::json& messages,
                                       const ChatRenderOptions& options) {
  return RenderChat(tmpl, nlohmann::ordered_json(messages), options);
}

}  // namespace tokenfab
