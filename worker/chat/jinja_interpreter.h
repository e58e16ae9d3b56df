// Executes a parsed chat template: jinja2's scoping (a for-loop iteration,
// macro call, {% set %} block or {% with %} is its own scope; `if` is not),
// loop variables, namespaces, macros and call blocks, break/continue.
//
// Errors name the template line and column, except raise_exception(), whose
// message is passed through untouched (see IsRaisedByTemplate). One
// RenderProgram call uses only its own state, so concurrent calls on one
// Program are safe.
#ifndef TOKENFAB_WORKER_CHAT_JINJA_INTERPRETER_H_
#define TOKENFAB_WORKER_CHAT_JINJA_INTERPRETER_H_

#include <string>

#include "absl/status/statusor.h"
#include "worker/chat/jinja_ast.h"
#include "worker/chat/jinja_globals.h"
#include "worker/chat/jinja_value.h"

namespace tokenfab::jinja {

// Rendering stops with an error past this much output.
inline constexpr size_t kMaxRenderedBytes = size_t{256} << 20;
// Macro calls nested deeper than this fail (Python would hit its recursion limit).
inline constexpr int kMaxCallDepth = 200;
// Loop iterations plus macro calls per render; past it rendering fails rather
// than keep a serving thread busy (jinja2 has no such limit).
inline constexpr int64_t kMaxRenderSteps = 10'000'000;

// `context` must be a dict with string keys: the template's variables.
absl::StatusOr<std::string> RenderProgram(const Program& program, const Value& context, Clock now);

}  // namespace tokenfab::jinja

#endif  // TOKENFAB_WORKER_CHAT_JINJA_INTERPRETER_H_
