// Python's printf-style string formatting (`"%s: %d" % (a, b)` and jinja2's
// `format` filter), with CPython's argument rules and error messages.
#ifndef TOKENFAB_WORKER_CHAT_JINJA_PRINTF_H_
#define TOKENFAB_WORKER_CHAT_JINJA_PRINTF_H_

#include <string>

#include "absl/status/statusor.h"
#include "worker/chat/jinja_value.h"

namespace tokenfab::jinja {

// `format % args`: a tuple supplies positional arguments, a dict supplies
// %(name)s keys, anything else is the single argument.
absl::StatusOr<Value> PyPercentFormat(const std::string& format, const Value& args);

}  // namespace tokenfab::jinja

#endif  // TOKENFAB_WORKER_CHAT_JINJA_PRINTF_H_
