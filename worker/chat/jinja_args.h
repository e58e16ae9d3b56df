// Binding call arguments to a Python-style signature, for the builtin
// functions, methods and filters of the chat template interpreter.
#ifndef TOKENFAB_WORKER_CHAT_JINJA_ARGS_H_
#define TOKENFAB_WORKER_CHAT_JINJA_ARGS_H_

#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/chat/jinja_value.h"

namespace tokenfab::jinja {

struct BoundArgs {
  std::vector<std::optional<Value>> values;                  // one per parameter, in order
  std::vector<Value> rest;                                   // extra positional (only if allowed)
  std::vector<std::pair<std::string, Value>> rest_keywords;  // extra keywords (only if allowed)

  bool Has(size_t i) const { return values[i].has_value(); }
  // The argument, or `fallback` when it was not given.
  Value Get(size_t i, Value fallback = Value::None()) const {
    return values[i] ? *values[i] : std::move(fallback);
  }
};

struct Signature {
  std::string_view function;  // for error messages
  std::initializer_list<std::string_view> params;
  size_t required = 0;      // the first `required` params must be given
  bool allow_rest = false;  // extra positional arguments go to `rest`
  bool allow_rest_keywords = false;
};

// Fails like Python on too many, missing, duplicate or unknown arguments.
absl::StatusOr<BoundArgs> BindArgs(const Signature& signature, const CallArgs& args);

}  // namespace tokenfab::jinja

#endif  // TOKENFAB_WORKER_CHAT_JINJA_ARGS_H_
