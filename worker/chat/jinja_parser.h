// Parser for chat templates: tokens to a syntax tree, following jinja2's
// grammar and operator precedence. Everything the interpreter cannot run is
// rejected here with its line and column -- unknown or unsupported tags,
// filters and tests, recursive loops, *args -- so a template that loads
// never renders a silently wrong prompt because of syntax it did not know.
#ifndef TOKENFAB_WORKER_CHAT_JINJA_PARSER_H_
#define TOKENFAB_WORKER_CHAT_JINJA_PARSER_H_

#include <memory>
#include <string_view>

#include "absl/status/statusor.h"
#include "worker/chat/jinja_ast.h"

namespace tokenfab::jinja {

absl::StatusOr<std::unique_ptr<Program>> ParseTemplate(std::string_view source);

}  // namespace tokenfab::jinja

#endif  // TOKENFAB_WORKER_CHAT_JINJA_PARSER_H_
