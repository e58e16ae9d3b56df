// A model's chat template (the Jinja text stored in its GGUF or tokenizer
// config), rendered byte-identically to Hugging Face transformers'
// apply_chat_template: jinja2's ImmutableSandboxedEnvironment with
// trim_blocks, lstrip_blocks and loopcontrols, HF's `tojson`, and the globals
// raise_exception(msg) and strftime_now(fmt).
//
// Create() parses the whole template; syntax this interpreter does not
// support (an unknown tag, filter or test, recursive loops, ...) fails there
// with its line and column, so a loaded template never renders a silently
// wrong prompt. A ChatTemplate is immutable: Render may be called from any
// number of threads at once.
//
// Key order: Python dicts keep insertion order and `tojson` prints keys in
// that order, so the context should be an nlohmann::ordered_json. The
// nlohmann::json overloads are for callers that have one; plain json objects
// iterate in sorted key order, which is what the template then sees.
#ifndef TOKENFAB_WORKER_CHAT_CHAT_TEMPLATE_H_
#define TOKENFAB_WORKER_CHAT_CHAT_TEMPLATE_H_

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace tokenfab {
namespace jinja {
struct Program;
}  // namespace jinja

class ChatTemplate {
 public:
  struct Options {
    // Clock behind strftime_now(); empty means the system clock. Dates are
    // formatted in the process's local time zone, as Python's datetime.now().
    std::function<std::chrono::system_clock::time_point()> now;
  };

  static absl::StatusOr<std::unique_ptr<ChatTemplate>> Create(std::string_view source);
  static absl::StatusOr<std::unique_ptr<ChatTemplate>> Create(std::string_view source,
                                                              Options options);
  ~ChatTemplate();

  // context: a JSON object (messages, add_generation_prompt, bos_token,
  // eos_token, tools, ...). A raise_exception() in the template returns
  // InvalidArgument with exactly the template's message; other errors name
  // the template line and column.
  absl::StatusOr<std::string> Render(const nlohmann::ordered_json& context) const;
  absl::StatusOr<std::string> Render(const nlohmann::json& context) const;

 private:
  ChatTemplate(std::unique_ptr<const jinja::Program> program, Options options);

  std::unique_ptr<const jinja::Program> program_;
  Options options_;
};

struct ChatRenderOptions {
  bool add_generation_prompt = true;
  std::string bos_token, eos_token;  // passed to the template as bos_token / eos_token
  // Merged into the context last, so it may override anything above (tools,
  // documents, date_string, custom variables). Ordered, so that tool schemas
  // keep their key order in `tojson`.
  nlohmann::ordered_json extra = nlohmann::ordered_json::object();
};

// Renders `messages` (a JSON array of {"role","content",...}) the way HF
// apply_chat_template does: the context holds messages, tools and documents
// (null unless given in `extra`), add_generation_prompt, bos_token and
// eos_token.
absl::StatusOr<std::string> RenderChat(const ChatTemplate& tmpl,
                                       const nlohmann::ordered_json& messages,
                                       const ChatRenderOptions& options);
absl::StatusOr<std::string> RenderChat(const ChatTemplate& tmpl, const nlohmann::json& messages,
                                       const ChatRenderOptions& options);

}  // namespace tokenfab

#endif  // TOKENFAB_WORKER_CHAT_CHAT_TEMPLATE_H_
