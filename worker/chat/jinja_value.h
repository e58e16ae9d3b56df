// Runtime values of the chat template interpreter, with Python's semantics.
//
// Templates are Python-flavoured: truthiness, equality, str() and repr(),
// int-vs-float printing and jinja2's Undefined all follow CPython and jinja2
// so that rendered prompts are byte-identical. Lists and dicts are immutable
// after construction (the sandbox HF uses forbids mutating them) and shared by
// pointer, so copying a Value is cheap; only a Namespace is mutable, which is
// what `{% set ns.attr = ... %}` needs. Values live within one Render call.
#ifndef TOKENFAB_WORKER_CHAT_JINJA_VALUE_H_
#define TOKENFAB_WORKER_CHAT_JINJA_VALUE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace tokenfab::jinja {

class Value;

// Arguments of a call, as Python sees them.
struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;
};

// What a sequence value is in Python; they differ in repr(), len() and
// truthiness (a generator is always true and has no len()).
enum class SeqKind { kList, kTuple, kGenerator, kDictItems, kDictKeys, kDictValues, kRange };

// Lists and dicts nested deeper than this are refused (and printing,
// comparing or serializing stops there), so that neither a hostile template
// nor a hostile context can exhaust the stack.
inline constexpr int kMaxValueDepth = 256;

struct Sequence {
  SeqKind kind = SeqKind::kList;
  std::vector<Value> items;
  int depth = 1;  // 1 + the deepest list/dict item; set by Value::Seq
};

struct Dict {
  // Insertion order, as Python dicts keep it.
  std::vector<std::pair<Value, Value>> entries;
  int depth = 1;  // as Sequence::depth; set by Value::MakeDict

  const Value* Find(const Value& key) const;
  const Value* FindString(std::string_view key) const;
  // Replaces the value of an existing key, else appends.
  void Set(Value key, Value value);
};

struct Namespace {
  std::vector<std::pair<std::string, Value>> attrs;

  const Value* Find(std::string_view name) const;
  void Set(std::string_view name, Value value);
};

// The `loop` variable of one for-loop iteration.
struct LoopState {
  int64_t index0 = 0;
  int64_t length = 0;
  std::shared_ptr<const Sequence> items;  // for previtem / nextitem
};

// A builtin function, bound method or macro.
struct Callable {
  std::string name;
  std::function<absl::StatusOr<Value>(const CallArgs&)> fn;
};

class Value {
 public:
  enum class Kind {
    kUndefined,
    kNone,
    kBool,
    kInt,
    kFloat,
    kString,
    kSequence,
    kDict,
    kNamespace,
    kLoop,
    kCallable,
  };

  Value() : v_(NoneTag{}) {}  // None
  static Value Undefined(std::string hint);
  static Value None() { return Value(); }
  static Value Bool(bool b);
  static Value Int(int64_t i);
  static Value Float(double d);
  static Value Str(std::string s);
  // A markupsafe.Markup: a str that jinja2 treats as already HTML-escaped.
  // `|safe` makes one; `+`, `%`, join() and format() with a Markup escape
  // their plain-str operands, exactly as Python does even with autoescape off.
  static Value Markup(std::string s);
  static Value Seq(std::vector<Value> items, SeqKind kind = SeqKind::kList);
  static Value MakeDict(Dict dict);
  static Value MakeNamespace(std::shared_ptr<Namespace> ns);
  static Value Loop(LoopState loop);
  static Value Function(std::string name, std::function<absl::StatusOr<Value>(const CallArgs&)> fn);

  Kind kind() const { return static_cast<Kind>(v_.index()); }
  bool is_undefined() const { return kind() == Kind::kUndefined; }
  bool is_none() const { return kind() == Kind::kNone; }
  bool is_bool() const { return kind() == Kind::kBool; }
  bool is_int() const { return kind() == Kind::kInt; }
  bool is_float() const { return kind() == Kind::kFloat; }
  bool is_string() const { return kind() == Kind::kString; }
  bool is_markup() const { return markup_ && is_string(); }
  bool is_sequence() const { return kind() == Kind::kSequence; }
  bool is_dict() const { return kind() == Kind::kDict; }
  bool is_namespace() const { return kind() == Kind::kNamespace; }
  bool is_loop() const { return kind() == Kind::kLoop; }
  bool is_callable() const { return kind() == Kind::kCallable; }
  // bool, int or float (Python's numbers.Number; bool is an int).
  bool is_number() const { return is_bool() || is_int() || is_float(); }
  // bool or int (Python's int).
  bool is_integral() const { return is_bool() || is_int(); }

  // Accessors; each requires the matching kind.
  const std::string& undefined_hint() const { return std::get<UndefinedTag>(v_).hint; }
  bool as_bool() const { return std::get<bool>(v_); }
  int64_t as_int() const { return std::get<int64_t>(v_); }
  double as_float() const { return std::get<double>(v_); }
  const std::string& as_string() const { return std::get<std::string>(v_); }
  const Sequence& as_seq() const { return *std::get<std::shared_ptr<const Sequence>>(v_); }
  const std::shared_ptr<const Sequence>& seq_ptr() const {
    return std::get<std::shared_ptr<const Sequence>>(v_);
  }
  const Dict& as_dict() const { return *std::get<std::shared_ptr<const Dict>>(v_); }
  Namespace& as_namespace() const { return *std::get<std::shared_ptr<Namespace>>(v_); }
  const LoopState& as_loop() const { return *std::get<std::shared_ptr<const LoopState>>(v_); }
  const Callable& as_callable() const { return *std::get<std::shared_ptr<const Callable>>(v_); }
  // Integral value of a bool or int.
  int64_t as_integral() const { return is_bool() ? (as_bool() ? 1 : 0) : as_int(); }
  // Numeric value of a bool, int or float.
  double as_double() const { return is_float() ? as_float() : static_cast<double>(as_integral()); }

  // Nesting of lists and dicts: 0 for anything else (a namespace included).
  int depth() const;

  // Same object (Python `is`): identity for shared objects, value for scalars.
  bool SameAs(const Value& other) const;

 private:
  struct UndefinedTag {
    std::string hint;
  };
  struct NoneTag {};
  using Storage = std::variant<UndefinedTag, NoneTag, bool, int64_t, double, std::string,
                               std::shared_ptr<const Sequence>, std::shared_ptr<const Dict>,
                               std::shared_ptr<Namespace>, std::shared_ptr<const LoopState>,
                               std::shared_ptr<const Callable>>;
  explicit Value(Storage v) : v_(std::move(v)) {}

  Storage v_;
  bool markup_ = false;
};

// Python truthiness (Undefined is false; a generator is always true).
bool Truthy(const Value& v);
// Python ==.
bool PyEquals(const Value& a, const Value& b);
// Python's type name, for error messages ("int", "str", "NoneType", ...).
std::string PyTypeName(const Value& v);
// str(v) as jinja2 prints it: Undefined is "", None is "None", floats as repr().
// Fails for values whose str() Python would give as an address (generators).
absl::StatusOr<std::string> PyStr(const Value& v);
// repr(v).
absl::StatusOr<std::string> PyRepr(const Value& v);
// repr() of a float, e.g. "1.0", "1e-05", "0.30000000000000004".
std::string PyFloatRepr(double d);
// Three-way comparison for Python's ordering operators: -1, 0 or 1. Fails
// like Python for unorderable types, naming `op` and the innermost types.
absl::StatusOr<int> PyCompare(const Value& a, const Value& b, std::string_view op = "<");
// markupsafe's escaping: & < > " ' become &amp; &lt; &gt; &#34; &#39;.
std::string HtmlEscape(std::string_view s);
// markupsafe.escape(v): a Markup stays as is, anything else is str()'d and escaped.
absl::StatusOr<Value> EscapeToMarkup(const Value& v);
// The result of a str method called on a Markup: strings become Markup.
Value AsMarkupLike(const Value& receiver, Value result);

// A Python TypeError (or ValueError) raised while rendering: the template's
// fault, so InvalidArgument.
inline absl::Status TypeError(const std::string& message) {
  return absl::InvalidArgumentError(message);
}

// jinja2's error for using an Undefined where a value is needed.
absl::Status UndefinedError(const Value& undefined);

}  // namespace tokenfab::jinja

#endif  // TOKENFAB_WORKER_CHAT_JINJA_VALUE_H_
