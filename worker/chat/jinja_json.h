// JSON in and out of the chat template interpreter.
//
// In: a render context arrives as nlohmann JSON and becomes Values; object
// key order is kept as given (ordered_json keeps insertion order, plain json
// has already sorted it). Out: the `tojson` filter must match Python's
// json.dumps exactly, as Hugging Face calls it (ensure_ascii=False by default,
// ", "/": " separators, "," when indenting, floats as repr()).
#ifndef TOKENFAB_WORKER_CHAT_JINJA_JSON_H_
#define TOKENFAB_WORKER_CHAT_JINJA_JSON_H_

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "worker/chat/jinja_value.h"

namespace tokenfab::jinja {

absl::StatusOr<Value> ValueFromJson(const nlohmann::ordered_json& json);
absl::StatusOr<Value> ValueFromJson(const nlohmann::json& json);

struct JsonDumpOptions {
  bool ensure_ascii = false;
  std::optional<std::string> indent;          // absent: one line
  std::optional<std::string> item_separator;  // default ", " (or "," when indenting)
  std::optional<std::string> key_separator;   // default ": "
  bool sort_keys = false;
};

// json.dumps(value, ...). Fails, as Python does, for values JSON cannot hold
// (Undefined, generators, namespaces, functions).
absl::StatusOr<std::string> DumpPythonJson(const Value& value, const JsonDumpOptions& options);

}  // namespace tokenfab::jinja

#endif  // TOKENFAB_WORKER_CHAT_JINJA_JSON_H_
