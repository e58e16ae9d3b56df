// Checked accessors for tokenizer.json / tokenizer_config.json values: a
// missing or mistyped field is an absl::Status naming the field, never an
// nlohmann exception. Internal to worker/tokenizer.
#ifndef TOKENFAB_WORKER_TOKENIZER_HF_JSON_H_
#define TOKENFAB_WORKER_TOKENIZER_HF_JSON_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/strings.h"
#include "nlohmann/json.hpp"

namespace tokenfab::hf_json {

using Json = nlohmann::json;

// The member `key` of an object, or nullptr if absent or null.
inline const Json* Member(const Json& obj, std::string_view key) {
  if (!obj.is_object()) return nullptr;
  auto it = obj.find(std::string(key));
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

inline absl::Status TypeError(std::string_view where, std::string_view key, std::string_view want) {
  return absl::InvalidArgumentError(StrCat(where, ": '", key, "' must be ", want));
}

inline absl::StatusOr<bool> BoolOr(const Json& obj, std::string_view key, bool fallback,
                                   std::string_view where) {
  const Json* v = Member(obj, key);
  if (v == nullptr) return fallback;
  if (!v->is_boolean()) return TypeError(where, key, "a boolean");
  return v->get<bool>();
}

inline absl::StatusOr<std::string> StringOr(const Json& obj, std::string_view key,
                                            std::string fallback, std::string_view where) {
  const Json* v = Member(obj, key);
  if (v == nullptr) return fallback;
  if (!v->is_string()) return TypeError(where, key, "a string");
  return v->get<std::string>();
}

inline absl::StatusOr<int64_t> IntOr(const Json& obj, std::string_view key, int64_t fallback,
                                     std::string_view where) {
  const Json* v = Member(obj, key);
  if (v == nullptr) return fallback;
  if (!v->is_number_integer()) return TypeError(where, key, "an integer");
  return v->get<int64_t>();
}

// The "type" of a component object ("" if absent).
inline absl::StatusOr<std::string> TypeOf(const Json& obj, std::string_view where) {
  if (!obj.is_object()) return absl::InvalidArgumentError(StrCat(where, ": must be an object"));
  return StringOr(obj, "type", "", where);
}

}  // namespace tokenfab::hf_json

#endif  // TOKENFAB_WORKER_TOKENIZER_HF_JSON_H_
