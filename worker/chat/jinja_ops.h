// Python operators and jinja2's sandboxed attribute/item access on Values.
//
// Each function fails the way CPython or jinja2 raises (TypeError, division
// by zero, use of an Undefined); messages follow theirs. Pure functions.
#ifndef TOKENFAB_WORKER_CHAT_JINJA_OPS_H_
#define TOKENFAB_WORKER_CHAT_JINJA_OPS_H_

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/chat/jinja_value.h"

namespace tokenfab::jinja {

// Largest string or list an operator may build; beyond it rendering fails
// rather than exhausting memory on a hostile template.
inline constexpr int64_t kMaxBuiltSize = int64_t{64} << 20;

// `obj.name`: a Python attribute (method) first, then the item; missing gives
// an Undefined. Fails if obj is Undefined, as jinja2 does.
absl::StatusOr<Value> GetAttr(const Value& obj, std::string_view name);
// Python attribute lookup only (methods, namespace and loop attributes), as
// the `attr` filter does; nullopt when there is none.
std::optional<Value> GetPythonAttribute(const Value& obj, std::string_view name);
// `obj[key]`: the item first, then a Python attribute named by a string key.
absl::StatusOr<Value> GetItem(const Value& obj, const Value& key);
// `obj[start:stop:step]`; None/Undefined bounds are omitted bounds.
absl::StatusOr<Value> SliceValue(const Value& obj, const Value& start, const Value& stop,
                                 const Value& step);

// + - * / // % ** on numbers, strings and lists.
absl::StatusOr<Value> BinaryOp(std::string_view op, const Value& a, const Value& b);
absl::StatusOr<Value> UnaryMinus(const Value& v);
absl::StatusOr<Value> UnaryPlus(const Value& v);
// `item in container`.
absl::StatusOr<bool> Contains(const Value& container, const Value& item);
// Comparison operator == != < <= > >= in notin.
absl::StatusOr<bool> CompareOp(std::string_view op, const Value& a, const Value& b);

// iter(v) materialized: characters of a str, keys of a dict, items of a
// sequence; an Undefined iterates as empty.
absl::StatusOr<std::vector<Value>> Iterate(const Value& v);
// len(v); an Undefined has length 0.
absl::StatusOr<int64_t> Length(const Value& v);
// v(args...).
absl::StatusOr<Value> CallValue(const Value& callee, const CallArgs& args);

}  // namespace tokenfab::jinja

#endif  // TOKENFAB_WORKER_CHAT_JINJA_OPS_H_
