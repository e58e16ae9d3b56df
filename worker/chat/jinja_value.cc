#include "worker/chat/jinja_value.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>

#include "absl/status/status.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "worker/chat/jinja_text.h"

namespace tokenfab::jinja {

const Value* Dict::Find(const Value& key) const {
  for (const auto& [k, v] : entries) {
    if (PyEquals(k, key)) return &v;
  }
  return nullptr;
}

const Value* Dict::FindString(std::string_view key) const {
  for (const auto& [k, v] : entries) {
    if (k.is_string() && k.as_string() == key) return &v;
  }
  return nullptr;
}

void Dict::Set(Value key, Value value) {
  for (auto& [k, v] : entries) {
    if (PyEquals(k, key)) {
      v = std::move(value);
      return;
    }
  }
  entries.emplace_back(std::move(key), std::move(value));
}

const Value* Namespace::Find(std::string_view name) const {
  for (const auto& [k, v] : attrs) {
    if (k == name) return &v;
  }
  return nullptr;
}

void Namespace::Set(std::string_view name, Value value) {
  for (auto& [k, v] : attrs) {
    if (k == name) {
      v = std::move(value);
      return;
    }
  }
  attrs.emplace_back(std::string(name), std::move(value));
}

Value Value::Undefined(std::string hint) { return Value(UndefinedTag{std::move(hint)}); }
Value Value::Bool(bool b) { return Value(Storage(b)); }
Value Value::Int(int64_t i) { return Value(Storage(i)); }
Value Value::Float(double d) { return Value(Storage(d)); }
Value Value::Str(std::string s) { return Value(Storage(std::move(s))); }
Value Value::Markup(std::string s) {
  Value v(Storage(std::move(s)));
  v.markup_ = true;
  return v;
}
Value Value::Seq(std::vector<Value> items, SeqKind kind) {
  auto seq = std::make_shared<Sequence>();
  seq->kind = kind;
  for (const Value& item : items) seq->depth = std::max(seq->depth, item.depth() + 1);
  seq->items = std::move(items);
  return Value(Storage(std::shared_ptr<const Sequence>(std::move(seq))));
}
Value Value::MakeDict(Dict dict) {
  dict.depth = 1;
  for (const auto& [k, v] : dict.entries)
    dict.depth = std::max(dict.depth, std::max(k.depth(), v.depth()) + 1);
  return Value(Storage(std::shared_ptr<const Dict>(std::make_shared<Dict>(std::move(dict)))));
}

int Value::depth() const {
  if (is_sequence()) return as_seq().depth;
  if (is_dict()) return as_dict().depth;
  return 0;
}
Value Value::MakeNamespace(std::shared_ptr<Namespace> ns) { return Value(Storage(std::move(ns))); }
Value Value::Loop(LoopState loop) {
  return Value(
      Storage(std::shared_ptr<const LoopState>(std::make_shared<LoopState>(std::move(loop)))));
}
Value Value::Function(std::string name, std::function<absl::StatusOr<Value>(const CallArgs&)> fn) {
  auto c = std::make_shared<Callable>();
  c->name = std::move(name);
  c->fn = std::move(fn);
  return Value(Storage(std::shared_ptr<const Callable>(std::move(c))));
}

bool Value::SameAs(const Value& other) const {
  if (kind() != other.kind()) return false;
  switch (kind()) {
    case Kind::kUndefined:
      return false;
    case Kind::kNone:
      return true;
    case Kind::kBool:
      return as_bool() == other.as_bool();
    case Kind::kInt:
      return as_int() == other.as_int();
    case Kind::kFloat:
      return as_float() == other.as_float();
    case Kind::kString:
      return as_string() == other.as_string();
    case Kind::kSequence:
      return seq_ptr() == other.seq_ptr();
    case Kind::kDict:
      return &as_dict() == &other.as_dict();
    case Kind::kNamespace:
      return &as_namespace() == &other.as_namespace();
    case Kind::kLoop:
      return &as_loop() == &other.as_loop();
    case Kind::kCallable:
      return &as_callable() == &other.as_callable();
  }
  return false;
}

bool Truthy(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNone:
      return false;
    case Value::Kind::kBool:
      return v.as_bool();
    case Value::Kind::kInt:
      return v.as_int() != 0;
    case Value::Kind::kFloat:
      return v.as_float() != 0.0;
    case Value::Kind::kString:
      return !v.as_string().empty();
    case Value::Kind::kSequence:
      return v.as_seq().kind == SeqKind::kGenerator || !v.as_seq().items.empty();
    case Value::Kind::kDict:
      return !v.as_dict().entries.empty();
    default:
      return true;
  }
}

namespace {

// Python raises RecursionError past its limit; this treats such values as unequal.
bool EqualsAtDepth(const Value& a, const Value& b, int depth);

}  // namespace

bool PyEquals(const Value& a, const Value& b) { return EqualsAtDepth(a, b, 0); }

namespace {

bool EqualsAtDepth(const Value& a, const Value& b, int depth) {
  if (depth > kMaxValueDepth) return false;
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return a.as_double() == b.as_double();
    return a.as_integral() == b.as_integral();
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNone:
      return true;
    case Value::Kind::kString:
      return a.as_string() == b.as_string();
    case Value::Kind::kSequence: {
      const Sequence& x = a.as_seq();
      const Sequence& y = b.as_seq();
      if (x.kind == SeqKind::kGenerator || y.kind == SeqKind::kGenerator) return a.SameAs(b);
      if (x.kind != y.kind || x.items.size() != y.items.size()) return false;
      for (size_t i = 0; i < x.items.size(); ++i) {
        if (!EqualsAtDepth(x.items[i], y.items[i], depth + 1)) return false;
      }
      return true;
    }
    case Value::Kind::kDict: {
      const Dict& x = a.as_dict();
      const Dict& y = b.as_dict();
      if (x.entries.size() != y.entries.size()) return false;
      for (const auto& [k, v] : x.entries) {
        const Value* other = y.Find(k);
        if (other == nullptr || !EqualsAtDepth(v, *other, depth + 1)) return false;
      }
      return true;
    }
    default:
      return a.SameAs(b);
  }
}

}  // namespace

std::string PyTypeName(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      return "Undefined";
    case Value::Kind::kNone:
      return "NoneType";
    case Value::Kind::kBool:
      return "bool";
    case Value::Kind::kInt:
      return "int";
    case Value::Kind::kFloat:
      return "float";
    case Value::Kind::kString:
      return v.is_markup() ? "Markup" : "str";
    case Value::Kind::kSequence:
      switch (v.as_seq().kind) {
        case SeqKind::kList:
          return "list";
        case SeqKind::kTuple:
          return "tuple";
        case SeqKind::kGenerator:
          return "generator";
        case SeqKind::kDictItems:
          return "dict_items";
        case SeqKind::kDictKeys:
          return "dict_keys";
        case SeqKind::kDictValues:
          return "dict_values";
        case SeqKind::kRange:
          return "range";
      }
      return "list";
    case Value::Kind::kDict:
      return "dict";
    case Value::Kind::kNamespace:
      return "Namespace";
    case Value::Kind::kLoop:
      return "LoopContext";
    case Value::Kind::kCallable:
      return "function";
  }
  return "object";
}

std::string PyFloatRepr(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  char buf[64];
  auto result = std::to_chars(buf, buf + sizeof(buf), d, std::chars_format::scientific);
  std::string sci(buf, result.ptr);
  // sci is "[-]d[.ddd]e[+-]XX": collect the shortest round-trip digits.
  std::string out;
  size_t i = 0;
  if (sci[0] == '-') {
    out.push_back('-');
    i = 1;
  }
  size_t e = sci.find('e');
  std::string digits;
  for (size_t k = i; k < e; ++k) {
    if (sci[k] != '.') digits.push_back(sci[k]);
  }
  int exponent = std::atoi(sci.c_str() + e + 1);
  int decpt = exponent + 1;  // value = 0.<digits> * 10^decpt
  int n = static_cast<int>(digits.size());
  if (decpt <= -4 || decpt > 16) {
    out.push_back(digits[0]);
    if (n > 1) {
      out.push_back('.');
      out.append(digits, 1, std::string::npos);
    }
    char exp_buf[16];
    std::snprintf(exp_buf, sizeof(exp_buf), "e%c%02d", exponent < 0 ? '-' : '+',
                  std::abs(exponent));
    out.append(exp_buf);
  } else if (decpt <= 0) {
    out.append("0.");
    out.append(static_cast<size_t>(-decpt), '0');
    out.append(digits);
  } else if (decpt >= n) {
    out.append(digits);
    out.append(static_cast<size_t>(decpt - n), '0');
    out.append(".0");
  } else {
    out.append(digits, 0, decpt);
    out.push_back('.');
    out.append(digits, decpt, std::string::npos);
  }
  return out;
}

namespace {

absl::Status TooDeep() {
  return absl::InvalidArgumentError(
      StrCat("value nested more than ", kMaxValueDepth, " levels deep (or circular)"));
}

absl::StatusOr<std::string> Render(const Value& v, bool repr, int depth) {
  if (depth > kMaxValueDepth) return TooDeep();
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      return std::string(repr ? "Undefined" : "");
    case Value::Kind::kNone:
      return std::string("None");
    case Value::Kind::kBool:
      return std::string(v.as_bool() ? "True" : "False");
    case Value::Kind::kInt:
      return std::to_string(v.as_int());
    case Value::Kind::kFloat:
      return PyFloatRepr(v.as_float());
    case Value::Kind::kString:
      if (!repr) return v.as_string();
      return v.is_markup() ? StrCat("Markup(", PyStringRepr(v.as_string()), ")")
                           : PyStringRepr(v.as_string());
    case Value::Kind::kSequence: {
      const Sequence& s = v.as_seq();
      if (s.kind == SeqKind::kGenerator) {
        return absl::InvalidArgumentError(
            "cannot print a generator (Python would print its address); apply |list first");
      }
      if (s.kind == SeqKind::kRange) {
        return absl::InvalidArgumentError(
            "printing a range object is not supported; apply |list first");
      }
      std::string out;
      bool tuple = s.kind == SeqKind::kTuple;
      if (s.kind == SeqKind::kDictItems) out = "dict_items(";
      if (s.kind == SeqKind::kDictKeys) out = "dict_keys(";
      if (s.kind == SeqKind::kDictValues) out = "dict_values(";
      out.push_back(tuple ? '(' : '[');
      for (size_t i = 0; i < s.items.size(); ++i) {
        if (i > 0) out.append(", ");
        ASSIGN_OR_RETURN(std::string item, Render(s.items[i], true, depth + 1));
        out.append(item);
      }
      if (tuple && s.items.size() == 1) out.push_back(',');
      out.push_back(tuple ? ')' : ']');
      if (!out.empty() && out[0] == 'd') out.push_back(')');  // close "dict_items(" etc.
      return out;
    }
    case Value::Kind::kDict: {
      std::string out = "{";
      bool first = true;
      for (const auto& [k, val] : v.as_dict().entries) {
        if (!first) out.append(", ");
        first = false;
        ASSIGN_OR_RETURN(std::string ks, Render(k, true, depth + 1));
        ASSIGN_OR_RETURN(std::string vs, Render(val, true, depth + 1));
        StrAppend(&out, ks, ": ", vs);
      }
      out.push_back('}');
      return out;
    }
    case Value::Kind::kNamespace: {
      std::string out = "<Namespace {";
      bool first = true;
      for (const auto& [k, val] : v.as_namespace().attrs) {
        if (!first) out.append(", ");
        first = false;
        ASSIGN_OR_RETURN(std::string vs, Render(val, true, depth + 1));
        StrAppend(&out, PyStringRepr(k), ": ", vs);
      }
      out.append("}>");
      return out;
    }
    case Value::Kind::kLoop:
      return StrCat("<LoopContext ", v.as_loop().index0 + 1, "/", v.as_loop().length, ">");
    case Value::Kind::kCallable:
      if (v.as_callable().name.rfind("macro ", 0) == 0) {
        return StrCat("<Macro ", PyStringRepr(v.as_callable().name.substr(6)), ">");
      }
      return absl::InvalidArgumentError(StrCat("cannot print the function '", v.as_callable().name,
                                               "' (Python would print its address)"));
  }
  return std::string();
}

}  // namespace

absl::StatusOr<std::string> PyStr(const Value& v) { return Render(v, false, 0); }
absl::StatusOr<std::string> PyRepr(const Value& v) { return Render(v, true, 0); }

absl::StatusOr<int> PyCompare(const Value& a, const Value& b, std::string_view op) {
  if (std::max(a.depth(), b.depth()) > kMaxValueDepth) return TooDeep();
  if (a.is_undefined()) return UndefinedError(a);
  if (b.is_undefined()) return UndefinedError(b);
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) {
      double x = a.as_double();
      double y = b.as_double();
      return x < y ? -1 : (x > y ? 1 : 0);
    }
    int64_t x = a.as_integral();
    int64_t y = b.as_integral();
    return x < y ? -1 : (x > y ? 1 : 0);
  }
  if (a.is_string() && b.is_string()) {
    int c = a.as_string().compare(b.as_string());  // UTF-8 byte order is code point order
    return c < 0 ? -1 : (c > 0 ? 1 : 0);
  }
  if (a.is_sequence() && b.is_sequence()) {
    const Sequence& x = a.as_seq();
    const Sequence& y = b.as_seq();
    bool same_type = (x.kind == SeqKind::kList && y.kind == SeqKind::kList) ||
                     (x.kind == SeqKind::kTuple && y.kind == SeqKind::kTuple);
    if (same_type) {
      for (size_t i = 0; i < x.items.size() && i < y.items.size(); ++i) {
        if (PyEquals(x.items[i], y.items[i])) continue;
        return PyCompare(x.items[i], y.items[i], op);
      }
      return x.items.size() < y.items.size() ? -1 : (x.items.size() > y.items.size() ? 1 : 0);
    }
  }
  return absl::InvalidArgumentError(StrCat("'", op, "' not supported between instances of '",
                                           PyTypeName(a), "' and '", PyTypeName(b), "'"));
}

std::string HtmlEscape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&':
        out.append("&amp;");
        break;
      case '<':
        out.append("&lt;");
        break;
      case '>':
        out.append("&gt;");
        break;
      case '"':
        out.append("&#34;");
        break;
      case '\'':
        out.append("&#39;");
        break;
      default:
        out.push_back(c);
    }
  }
  return out;
}

absl::StatusOr<Value> EscapeToMarkup(const Value& v) {
  if (v.is_markup()) return v;
  ASSIGN_OR_RETURN(std::string s, PyStr(v));
  return Value::Markup(HtmlEscape(s));
}

Value AsMarkupLike(const Value& receiver, Value result) {
  if (!receiver.is_markup()) return result;
  if (result.is_string()) return Value::Markup(result.as_string());
  if (result.is_sequence()) {
    std::vector<Value> items;
    for (const Value& item : result.as_seq().items) items.push_back(AsMarkupLike(receiver, item));
    return Value::Seq(std::move(items), result.as_seq().kind);
  }
  return result;
}

absl::Status UndefinedError(const Value& undefined) {
  return absl::InvalidArgumentError(undefined.undefined_hint());
}

}  // namespace tokenfab::jinja
