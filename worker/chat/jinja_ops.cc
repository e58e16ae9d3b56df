#include "worker/chat/jinja_ops.h"

#include <cmath>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "worker/chat/jinja_methods.h"
#include "worker/chat/jinja_printf.h"
#include "worker/chat/jinja_text.h"

namespace tokenfab::jinja {
namespace {

// jinja2's object_type_repr.
std::string ObjectTypeRepr(const Value& obj) {
  if (obj.is_none()) return "None";
  if (obj.is_namespace()) return "jinja2.utils.Namespace object";
  if (obj.is_loop()) return "jinja2.runtime.LoopContext object";
  return StrCat(PyTypeName(obj), " object");
}

Value MissingAttribute(const Value& obj, std::string_view name) {
  return Value::Undefined(
      StrCat(PyStringRepr(ObjectTypeRepr(obj)), " has no attribute ", PyStringRepr(name)));
}

Value MissingElement(const Value& obj, const Value& key) {
  if (key.is_string()) return MissingAttribute(obj, key.as_string());
  absl::StatusOr<std::string> k = PyRepr(key);
  return Value::Undefined(StrCat(ObjectTypeRepr(obj), " has no element ", k.ok() ? *k : "?"));
}

std::optional<Value> LoopAttribute(const LoopState& loop, std::string_view name) {
  int64_t i = loop.index0;
  int64_t n = loop.length;
  if (name == "index") return Value::Int(i + 1);
  if (name == "index0") return Value::Int(i);
  if (name == "revindex") return Value::Int(n - i);
  if (name == "revindex0") return Value::Int(n - i - 1);
  if (name == "first") return Value::Bool(i == 0);
  if (name == "last") return Value::Bool(i == n - 1);
  if (name == "length") return Value::Int(n);
  if (name == "depth") return Value::Int(1);
  if (name == "depth0") return Value::Int(0);
  if (name == "previtem") {
    if (i == 0) return Value::Undefined("there is no previous item");
    return loop.items->items[i - 1];
  }
  if (name == "nextitem") {
    if (i + 1 >= n) return Value::Undefined("there is no next item");
    return loop.items->items[i + 1];
  }
  if (name == "cycle") {
    return Value::Function("loop.cycle", [i](const CallArgs& args) -> absl::StatusOr<Value> {
      if (args.positional.empty()) return TypeError("no items for cycling given");
      return args.positional[i % static_cast<int64_t>(args.positional.size())];
    });
  }
  return std::nullopt;
}

std::optional<int64_t> NormalizeIndex(int64_t index, int64_t size) {
  if (index < 0) index += size;
  if (index < 0 || index >= size) return std::nullopt;
  return index;
}

absl::Status Overflow() {
  return absl::InvalidArgumentError(
      "integer overflow: the template computed a value beyond 64 bits");
}

absl::StatusOr<Value> Repeat(const Value& seq, int64_t times) {
  if (times < 0) times = 0;
  if (seq.is_string()) {
    const std::string& s = seq.as_string();
    if (!s.empty() && times > kMaxBuiltSize / static_cast<int64_t>(s.size())) {
      return absl::ResourceExhaustedError("string repetition result too large");
    }
    std::string out;
    out.reserve(s.size() * times);
    for (int64_t i = 0; i < times; ++i) out.append(s);
    return Value::Str(std::move(out));
  }
  const Sequence& s = seq.as_seq();
  if (!s.items.empty() && times > kMaxBuiltSize / static_cast<int64_t>(s.items.size())) {
    return absl::ResourceExhaustedError("list repetition result too large");
  }
  std::vector<Value> out;
  for (int64_t i = 0; i < times; ++i) out.insert(out.end(), s.items.begin(), s.items.end());
  return Value::Seq(std::move(out), s.kind);
}

// Python's unhashable builtins: list, dict and dict views.
bool IsUnhashable(const Value& v) {
  if (v.is_dict()) return true;
  if (!v.is_sequence()) return false;
  SeqKind k = v.as_seq().kind;
  return k != SeqKind::kTuple && k != SeqKind::kGenerator && k != SeqKind::kRange;
}

bool IsListOrTuple(const Value& v) {
  return v.is_sequence() &&
         (v.as_seq().kind == SeqKind::kList || v.as_seq().kind == SeqKind::kTuple);
}

// Sequences that support indexing and slicing: list, tuple, range.
bool IsSubscriptable(const Value& v) {
  return IsListOrTuple(v) || (v.is_sequence() && v.as_seq().kind == SeqKind::kRange);
}

absl::StatusOr<Value> IntPow(int64_t base, int64_t exp) {
  if (exp < 0) {
    if (base == 0) return absl::InvalidArgumentError("0.0 cannot be raised to a negative power");
    return Value::Float(std::pow(static_cast<double>(base), static_cast<double>(exp)));
  }
  int64_t result = 1;
  while (exp > 0) {
    if (exp & 1) {
      if (__builtin_mul_overflow(result, base, &result)) return Overflow();
    }
    exp >>= 1;
    if (exp > 0 && __builtin_mul_overflow(base, base, &base)) return Overflow();
  }
  return Value::Int(result);
}

// CPython's float_floor_div and float_rem.
double FloatMod(double x, double y) {
  double mod = std::fmod(x, y);
  if (mod != 0) {
    if ((y < 0) != (mod < 0)) mod += y;
  } else {
    mod = std::copysign(0.0, y);
  }
  return mod;
}
double FloatFloorDiv(double x, double y) {
  double mod = std::fmod(x, y);
  double div = (x - mod) / y;
  if (mod != 0 && ((y < 0) != (mod < 0))) div -= 1.0;
  if (div == 0) return std::copysign(0.0, x / y);
  double floordiv = std::floor(div);
  if (div - floordiv > 0.5) floordiv += 1.0;
  return floordiv;
}

absl::StatusOr<Value> NumericOp(std::string_view op, const Value& a, const Value& b) {
  bool as_float = a.is_float() || b.is_float();
  if (!as_float) {
    int64_t x = a.as_integral();
    int64_t y = b.as_integral();
    int64_t r = 0;
    if (op == "+") {
      if (__builtin_add_overflow(x, y, &r)) return Overflow();
      return Value::Int(r);
    }
    if (op == "-") {
      if (__builtin_sub_overflow(x, y, &r)) return Overflow();
      return Value::Int(r);
    }
    if (op == "*") {
      if (__builtin_mul_overflow(x, y, &r)) return Overflow();
      return Value::Int(r);
    }
    if (op == "/") {
      if (y == 0) return absl::InvalidArgumentError("division by zero");
      return Value::Float(static_cast<double>(x) / static_cast<double>(y));
    }
    if (op == "//" || op == "%") {
      if (y == 0) {
        return absl::InvalidArgumentError(op == "%" ? "integer modulo by zero"
                                                    : "integer division or modulo by zero");
      }
      if (x == INT64_MIN && y == -1)
        return op == "%" ? Value::Int(0) : absl::StatusOr<Value>(Overflow());
      int64_t q = x / y;
      int64_t m = x % y;
      if (m != 0 && ((m < 0) != (y < 0))) {
        --q;
        m += y;
      }
      return Value::Int(op == "//" ? q : m);
    }
    if (op == "**") return IntPow(x, y);
  }
  double x = a.as_double();
  double y = b.as_double();
  if (op == "+") return Value::Float(x + y);
  if (op == "-") return Value::Float(x - y);
  if (op == "*") return Value::Float(x * y);
  if (op == "/") {
    if (y == 0) return absl::InvalidArgumentError("float division by zero");
    return Value::Float(x / y);
  }
  if (op == "//") {
    if (y == 0) return absl::InvalidArgumentError("float floor division by zero");
    return Value::Float(FloatFloorDiv(x, y));
  }
  if (op == "%") {
    if (y == 0) return absl::InvalidArgumentError("float modulo");
    return Value::Float(FloatMod(x, y));
  }
  if (op == "**") {
    if (x == 0 && y < 0)
      return absl::InvalidArgumentError("0.0 cannot be raised to a negative power");
    if (x < 0 && y != std::floor(y)) {
      return absl::InvalidArgumentError("a negative number to a fractional power is complex");
    }
    return Value::Float(std::pow(x, y));
  }
  return absl::InternalError(StrCat("unknown operator ", op));
}

}  // namespace

std::optional<Value> GetPythonAttribute(const Value& obj, std::string_view name) {
  if (obj.is_namespace()) {
    if (const Value* v = obj.as_namespace().Find(name)) return *v;
    return std::nullopt;
  }
  if (obj.is_loop()) return LoopAttribute(obj.as_loop(), name);
  if (obj.is_number()) {  // numbers.Number's data attributes
    if (name == "real") return obj.is_float() ? obj : Value::Int(obj.as_integral());
    if (name == "imag") return obj.is_float() ? Value::Float(0.0) : Value::Int(0);
    if (obj.is_integral() && name == "numerator") return Value::Int(obj.as_integral());
    if (obj.is_integral() && name == "denominator") return Value::Int(1);
    return std::nullopt;
  }
  return LookupMethod(obj, name);
}

absl::StatusOr<Value> GetAttr(const Value& obj, std::string_view name) {
  if (obj.is_undefined()) return UndefinedError(obj);
  if (std::optional<Value> attr = GetPythonAttribute(obj, name)) return *attr;
  if (obj.is_dict()) {
    if (const Value* v = obj.as_dict().FindString(name)) return *v;
  }
  return MissingAttribute(obj, name);
}

absl::StatusOr<Value> GetItem(const Value& obj, const Value& key) {
  if (obj.is_undefined()) return UndefinedError(obj);
  if (obj.is_dict()) {
    // An unhashable key raises TypeError, which jinja2 turns into an Undefined.
    const Value* v = IsUnhashable(key) ? nullptr : obj.as_dict().Find(key);
    if (v != nullptr) return *v;
  } else if (key.is_integral() && (IsSubscriptable(obj) || obj.is_string())) {
    if (obj.is_string()) {
      std::u32string cps = DecodeUtf8(obj.as_string());
      if (auto i = NormalizeIndex(key.as_integral(), static_cast<int64_t>(cps.size()))) {
        std::string out;
        AppendUtf8(cps[*i], &out);
        return AsMarkupLike(obj, Value::Str(std::move(out)));
      }
    } else {
      const std::vector<Value>& items = obj.as_seq().items;
      if (auto i = NormalizeIndex(key.as_integral(), static_cast<int64_t>(items.size()))) {
        return items[*i];
      }
    }
    return MissingElement(obj, key);
  }
  if (key.is_string()) {
    if (std::optional<Value> attr = GetPythonAttribute(obj, key.as_string())) return *attr;
  }
  return MissingElement(obj, key);
}

absl::StatusOr<Value> SliceValue(const Value& obj, const Value& start, const Value& stop,
                                 const Value& step) {
  // jinja2 compiles slices to plain Python subscription, bypassing the
  // sandbox's getitem, so failures raise instead of giving an Undefined.
  if (obj.is_undefined()) return UndefinedError(obj);
  if (obj.is_dict()) return TypeError("unhashable type: 'slice'");
  if (!obj.is_string() && !IsSubscriptable(obj)) {
    return TypeError(StrCat("'", PyTypeName(obj), "' object is not subscriptable"));
  }
  std::optional<int64_t> bounds[3];
  const Value* given[3] = {&start, &stop, &step};
  for (int i = 0; i < 3; ++i) {
    if (given[i]->is_none()) continue;
    if (!given[i]->is_integral()) {
      return TypeError("slice indices must be integers or None or have an __index__ method");
    }
    bounds[i] = given[i]->as_integral();
  }
  int64_t st = bounds[2].value_or(1);
  if (st == 0) return absl::InvalidArgumentError("slice step cannot be zero");
  if (obj.is_string()) {
    return AsMarkupLike(obj, Value::Str(EncodeUtf8(SliceCodePoints(DecodeUtf8(obj.as_string()),
                                                                   bounds[0], bounds[1], st))));
  }
  const std::vector<Value>& items = obj.as_seq().items;
  std::vector<Value> out;
  for (int64_t i : SliceIndices(static_cast<int64_t>(items.size()), bounds[0], bounds[1], st)) {
    out.push_back(items[i]);
  }
  return Value::Seq(std::move(out), obj.as_seq().kind);
}

absl::StatusOr<Value> BinaryOp(std::string_view op, const Value& a, const Value& b) {
  if (a.is_undefined()) return UndefinedError(a);
  if (b.is_undefined()) return UndefinedError(b);
  if (a.is_number() && b.is_number()) return NumericOp(op, a, b);
  if (op == "+" && (a.is_markup() || b.is_markup()) && a.is_string() && b.is_string()) {
    // Markup.__add__ / __radd__ escape the plain operand.
    ASSIGN_OR_RETURN(Value x, EscapeToMarkup(a));
    ASSIGN_OR_RETURN(Value y, EscapeToMarkup(b));
    return Value::Markup(x.as_string() + y.as_string());
  }
  if (op == "+" && a.is_markup()) {
    return TypeError(
        StrCat("unsupported operand type(s) for +: 'Markup' and '", PyTypeName(b), "'"));
  }
  if (op == "+") {
    if (a.is_string() && b.is_string()) {
      if (static_cast<int64_t>(a.as_string().size() + b.as_string().size()) > kMaxBuiltSize) {
        return absl::ResourceExhaustedError("string concatenation result too large");
      }
      return Value::Str(a.as_string() + b.as_string());
    }
    if (IsListOrTuple(a) && IsListOrTuple(b) && a.as_seq().kind == b.as_seq().kind) {
      std::vector<Value> items = a.as_seq().items;
      items.insert(items.end(), b.as_seq().items.begin(), b.as_seq().items.end());
      return Value::Seq(std::move(items), a.as_seq().kind);
    }
    if (a.is_string() || IsListOrTuple(a)) {
      return TypeError(StrCat("can only concatenate ", PyTypeName(a), " (not \"", PyTypeName(b),
                              "\") to ", PyTypeName(a)));
    }
  }
  if (op == "*") {
    if ((a.is_string() || IsListOrTuple(a)) && b.is_integral()) {
      ASSIGN_OR_RETURN(Value r, Repeat(a, b.as_integral()));
      return AsMarkupLike(a, std::move(r));
    }
    if ((b.is_string() || IsListOrTuple(b)) && a.is_integral()) {
      ASSIGN_OR_RETURN(Value r, Repeat(b, a.as_integral()));
      return AsMarkupLike(b, std::move(r));
    }
    if (a.is_string() || IsListOrTuple(a) || b.is_string() || IsListOrTuple(b)) {
      const Value& other = (a.is_string() || IsListOrTuple(a)) ? b : a;
      return TypeError(
          StrCat("can't multiply sequence by non-int of type '", PyTypeName(other), "'"));
    }
  }
  if (op == "%" && a.is_markup()) {
    // Markup.__mod__ escapes the arguments.
    auto escape_arg = [](const Value& v) -> absl::StatusOr<Value> {
      if (v.is_number() || v.is_none()) return v;
      return EscapeToMarkup(v);
    };
    Value args = b;
    if (b.is_sequence() && b.as_seq().kind == SeqKind::kTuple) {
      std::vector<Value> items;
      for (const Value& item : b.as_seq().items) {
        ASSIGN_OR_RETURN(Value e, escape_arg(item));
        items.push_back(std::move(e));
      }
      args = Value::Seq(std::move(items), SeqKind::kTuple);
    } else if (b.is_dict()) {
      Dict escaped;
      for (const auto& [k, v] : b.as_dict().entries) {
        ASSIGN_OR_RETURN(Value e, escape_arg(v));
        escaped.Set(k, std::move(e));
      }
      args = Value::MakeDict(std::move(escaped));
    } else {
      ASSIGN_OR_RETURN(args, escape_arg(b));
    }
    ASSIGN_OR_RETURN(Value out, PyPercentFormat(a.as_string(), args));
    return Value::Markup(out.as_string());
  }
  if (op == "%" && a.is_string()) return PyPercentFormat(a.as_string(), b);
  std::string shown(op);
  return TypeError(StrCat("unsupported operand type(s) for ", shown == "**" ? "** or pow()" : shown,
                          ": '", PyTypeName(a), "' and '", PyTypeName(b), "'"));
}

absl::StatusOr<Value> UnaryMinus(const Value& v) {
  if (v.is_undefined()) return UndefinedError(v);
  if (v.is_float()) return Value::Float(-v.as_float());
  if (v.is_integral()) {
    if (v.as_integral() == INT64_MIN) return Overflow();
    return Value::Int(-v.as_integral());
  }
  return TypeError(StrCat("bad operand type for unary -: '", PyTypeName(v), "'"));
}

absl::StatusOr<Value> UnaryPlus(const Value& v) {
  if (v.is_undefined()) return UndefinedError(v);
  if (v.is_float()) return v;
  if (v.is_integral()) return Value::Int(v.as_integral());
  return TypeError(StrCat("bad operand type for unary +: '", PyTypeName(v), "'"));
}

absl::StatusOr<bool> Contains(const Value& container, const Value& item) {
  switch (container.kind()) {
    case Value::Kind::kString:
      if (!item.is_string()) {
        return TypeError(
            StrCat("'in <string>' requires string as left operand, not ", PyTypeName(item)));
      }
      return container.as_string().find(item.as_string()) != std::string::npos;
    case Value::Kind::kSequence:
      for (const Value& v : container.as_seq().items) {
        if (PyEquals(v, item)) return true;
      }
      return false;
    case Value::Kind::kDict:
      if (IsUnhashable(item)) return TypeError(StrCat("unhashable type: '", PyTypeName(item), "'"));
      return container.as_dict().Find(item) != nullptr;
    case Value::Kind::kUndefined:
      return false;
    default:
      return TypeError(StrCat("argument of type '", PyTypeName(container), "' is not iterable"));
  }
}

absl::StatusOr<bool> CompareOp(std::string_view op, const Value& a, const Value& b) {
  if (op == "==") return PyEquals(a, b);
  if (op == "!=") return !PyEquals(a, b);
  if (op == "in") return Contains(b, a);
  if (op == "notin") {
    ASSIGN_OR_RETURN(bool in, Contains(b, a));
    return !in;
  }
  ASSIGN_OR_RETURN(int c, PyCompare(a, b, op));
  if ((a.is_float() && std::isnan(a.as_float())) || (b.is_float() && std::isnan(b.as_float()))) {
    return false;
  }
  if (op == "<") return c < 0;
  if (op == "<=") return c <= 0;
  if (op == ">") return c > 0;
  if (op == ">=") return c >= 0;
  return absl::InternalError(StrCat("unknown comparison ", op));
}

absl::StatusOr<std::vector<Value>> Iterate(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      return std::vector<Value>();
    case Value::Kind::kString: {
      std::vector<Value> out;
      for (char32_t c : DecodeUtf8(v.as_string())) {
        std::string s;
        AppendUtf8(c, &s);
        out.push_back(Value::Str(std::move(s)));
      }
      return out;
    }
    case Value::Kind::kSequence:
      return v.as_seq().items;
    case Value::Kind::kDict: {
      std::vector<Value> out;
      for (const auto& [k, val] : v.as_dict().entries) out.push_back(k);
      return out;
    }
    default:
      return TypeError(StrCat("'", PyTypeName(v), "' object is not iterable"));
  }
}

absl::StatusOr<int64_t> Length(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      return 0;
    case Value::Kind::kString:
      return CodePointCount(v.as_string());
    case Value::Kind::kSequence:
      if (v.as_seq().kind == SeqKind::kGenerator) break;
      return static_cast<int64_t>(v.as_seq().items.size());
    case Value::Kind::kDict:
      return static_cast<int64_t>(v.as_dict().entries.size());
    case Value::Kind::kLoop:
      return v.as_loop().length;
    default:
      break;
  }
  return TypeError(StrCat("object of type '", PyTypeName(v), "' has no len()"));
}

absl::StatusOr<Value> CallValue(const Value& callee, const CallArgs& args) {
  if (callee.is_undefined()) return UndefinedError(callee);
  if (!callee.is_callable()) {
    return TypeError(StrCat("'", PyTypeName(callee), "' object is not callable"));
  }
  return callee.as_callable().fn(args);
}

}  // namespace tokenfab::jinja
