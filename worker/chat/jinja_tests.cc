#include "worker/chat/jinja_tests.h"

#include <algorithm>
#include <string>

#include "absl/status/status.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "worker/chat/jinja_args.h"
#include "worker/chat/jinja_ops.h"
#include "worker/chat/jinja_text.h"

namespace tokenfab::jinja {
namespace {

constexpr std::string_view kSupportedTests[] = {
    "odd",     "even",    "divisibleby", "defined",  "undefined", "filter", "test",        "none",
    "boolean", "false",   "true",        "integer",  "float",     "lower",  "upper",       "string",
    "mapping", "number",  "sequence",    "iterable", "callable",  "sameas", "in",          "==",
    "eq",      "equalto", "!=",          "ne",       ">",         "gt",     "greaterthan", "ge",
    ">=",      "<",       "lt",          "lessthan", "<=",        "le",     "escaped"};

// `value % divisor == remainder`, failing like Python for non-numbers.
absl::StatusOr<bool> ModEquals(const Value& value, const Value& divisor, int64_t remainder) {
  ASSIGN_OR_RETURN(Value mod, BinaryOp("%", value, divisor));
  return PyEquals(mod, Value::Int(remainder));
}

absl::StatusOr<Value> OneArg(std::string_view name, const CallArgs& args) {
  ASSIGN_OR_RETURN(BoundArgs b, BindArgs({name, {"other"}, 1}, args));
  return b.Get(0);
}

absl::StatusOr<bool> NoArgs(std::string_view name, const CallArgs& args) {
  RETURN_IF_ERROR(BindArgs({name, {}}, args).status());
  return true;
}

bool IsSequence(const Value& v) {
  // len() and __getitem__: str, list, tuple, dict and (quirk) Undefined.
  if (v.is_string() || v.is_dict() || v.is_undefined()) return true;
  if (!v.is_sequence()) return false;
  SeqKind k = v.as_seq().kind;
  return k == SeqKind::kList || k == SeqKind::kTuple || k == SeqKind::kRange;
}

}  // namespace

BuiltinSupport GetTestSupport(std::string_view name) {
  if (std::find(std::begin(kSupportedTests), std::end(kSupportedTests), name) !=
      std::end(kSupportedTests)) {
    return BuiltinSupport::kSupported;
  }
  return BuiltinSupport::kUnknown;
}

absl::StatusOr<bool> ApplyTest(std::string_view name, const Value& v, const CallArgs& args) {
  if (name == "defined" || name == "undefined") {
    RETURN_IF_ERROR(NoArgs(name, args).status());
    return v.is_undefined() == (name == "undefined");
  }
  if (name == "none") {
    RETURN_IF_ERROR(NoArgs(name, args).status());
    return v.is_none();
  }
  if (name == "boolean" || name == "true" || name == "false") {
    RETURN_IF_ERROR(NoArgs(name, args).status());
    if (!v.is_bool()) return false;
    return name == "boolean" || v.as_bool() == (name == "true");
  }
  if (name == "escaped") {
    RETURN_IF_ERROR(NoArgs(name, args).status());
    return v.is_markup();
  }
  if (name == "integer" || name == "float" || name == "number" || name == "string" ||
      name == "mapping" || name == "iterable" || name == "sequence" || name == "callable") {
    RETURN_IF_ERROR(NoArgs(name, args).status());
    if (name == "integer") return v.is_int();
    if (name == "float") return v.is_float();
    if (name == "number") return v.is_number();
    if (name == "string") return v.is_string();
    if (name == "mapping") return v.is_dict();
    if (name == "sequence") return IsSequence(v);
    if (name == "callable") return v.is_callable() || v.is_undefined();
    // iterable: str, sequences, dicts and (quirk) Undefined.
    return v.is_string() || v.is_sequence() || v.is_dict() || v.is_undefined();
  }
  if (name == "odd" || name == "even") {
    RETURN_IF_ERROR(NoArgs(name, args).status());
    return ModEquals(v, Value::Int(2), name == "odd" ? 1 : 0);
  }
  if (name == "divisibleby") {
    ASSIGN_OR_RETURN(Value num, OneArg(name, args));
    return ModEquals(v, num, 0);
  }
  if (name == "lower" || name == "upper") {
    RETURN_IF_ERROR(NoArgs(name, args).status());
    ASSIGN_OR_RETURN(std::string s, PyStr(v));
    std::u32string cps = DecodeUtf8(s);
    bool cased = false;
    for (char32_t c : cps) {
      if (name == "lower" ? IsPyUpper(c) : IsPyLower(c)) return false;
      cased = cased || (name == "lower" ? IsPyLower(c) : IsPyUpper(c));
    }
    return cased;
  }
  if (name == "filter" || name == "test") {  // `'upper' is filter`: is there one by that name?
    RETURN_IF_ERROR(NoArgs(name, args).status());
    if (!v.is_string()) return false;
    BuiltinSupport support =
        name == "filter" ? GetFilterSupport(v.as_string()) : GetTestSupport(v.as_string());
    return support == BuiltinSupport::kSupported;
  }
  ASSIGN_OR_RETURN(Value other, OneArg(name, args));
  if (name == "sameas") return v.SameAs(other);
  if (name == "in") return Contains(other, v);
  std::string_view op;
  if (name == "==" || name == "eq" || name == "equalto") op = "==";
  if (name == "!=" || name == "ne") op = "!=";
  if (name == ">" || name == "gt" || name == "greaterthan") op = ">";
  if (name == ">=" || name == "ge") op = ">=";
  if (name == "<" || name == "lt" || name == "lessthan") op = "<";
  if (name == "<=" || name == "le") op = "<=";
  if (op.empty()) return absl::InvalidArgumentError(StrCat("No test named '", name, "'."));
  return CompareOp(op, v, other);
}

}  // namespace tokenfab::jinja
