// jinja2's builtin filters, as chat templates use them (with HF's `tojson`).
// The parser asks which names exist so that a template using a filter this
// interpreter lacks fails at load time, not at render time.
#ifndef TOKENFAB_WORKER_CHAT_JINJA_FILTERS_H_
#define TOKENFAB_WORKER_CHAT_JINJA_FILTERS_H_

#include <string_view>

#include "absl/status/statusor.h"
#include "worker/chat/jinja_value.h"

namespace tokenfab::jinja {

enum class BuiltinSupport {
  kSupported,
  kNotSupported,  // a jinja2 builtin this interpreter does not implement
  kUnknown,       // not a jinja2 builtin either
};

BuiltinSupport GetFilterSupport(std::string_view name);

// `input | name(args)`.
absl::StatusOr<Value> ApplyFilter(std::string_view name, const Value& input, const CallArgs& args);

}  // namespace tokenfab::jinja

#endif  // TOKENFAB_WORKER_CHAT_JINJA_FILTERS_H_
