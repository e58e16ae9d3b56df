// jinja2's builtin tests (`x is defined`, `x is equalto y`, ...). The parser
// asks which names exist so that an unknown test fails at load time.
#ifndef TOKENFAB_WORKER_CHAT_JINJA_TESTS_H_
#define TOKENFAB_WORKER_CHAT_JINJA_TESTS_H_

#include <string_view>

#include "absl/status/statusor.h"
#include "worker/chat/jinja_filters.h"
#include "worker/chat/jinja_value.h"

namespace tokenfab::jinja {

BuiltinSupport GetTestSupport(std::string_view name);

// `input is name(args)`.
absl::StatusOr<bool> ApplyTest(std::string_view name, const Value& input, const CallArgs& args);

}  // namespace tokenfab::jinja

#endif  // TOKENFAB_WORKER_CHAT_JINJA_TESTS_H_
