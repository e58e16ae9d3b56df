#include "worker/chat/jinja_filters.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "worker/chat/jinja_args.h"
#include "worker/chat/jinja_json.h"
#include "worker/chat/jinja_ops.h"
#include "worker/chat/jinja_printf.h"
#include "worker/chat/jinja_seq_filters.h"
#include "worker/chat/jinja_text.h"

namespace tokenfab::jinja {
namespace {

// jinja2 builtins deliberately left out; a template naming one fails to load.
constexpr std::string_view kUnsupportedFilters[] = {
    "batch",     "filesizeformat", "groupby",   "pprint", "random",   "slice",
    "striptags", "truncate",       "urlencode", "urlize", "wordwrap", "xmlattr"};

absl::StatusOr<std::string> SoftStr(const Value& v) { return PyStr(v); }

// soft_str keeps a Markup a Markup, and its str methods return Markup.
absl::StatusOr<Value> StringTransform(const Value& input, const CallArgs& args,
                                      std::string_view name,
                                      std::string (*transform)(std::string_view)) {
  RETURN_IF_ERROR(BindArgs({name, {}}, args).status());
  ASSIGN_OR_RETURN(std::string s, SoftStr(input));
  return AsMarkupLike(input, Value::Str(transform(s)));
}

// jinja2's title filter: capitalize after runs of whitespace, '-', '(', '{', '[', '<'.
std::string JinjaTitle(std::string_view s) {
  std::u32string in = DecodeUtf8(s);
  auto is_separator = [](char32_t c) {
    return IsPySpace(c) || c == '-' || c == '(' || c == '{' || c == '[' || c == '<';
  };
  std::string out;
  size_t i = 0;
  while (i < in.size()) {
    size_t j = i;
    bool sep = is_separator(in[i]);
    while (j < in.size() && is_separator(in[j]) == sep) ++j;
    std::u32string_view item(in.data() + i, j - i);
    if (sep) {
      out.append(EncodeUtf8(item));
    } else {
      out.append(PyUpper(EncodeUtf8(item.substr(0, 1))));
      out.append(PyLower(EncodeUtf8(item.substr(1))));
    }
    i = j;
  }
  return out;
}

absl::StatusOr<Value> Upper(const Value& v, const CallArgs& a) {
  return StringTransform(v, a, "upper", PyUpper);
}
absl::StatusOr<Value> Lower(const Value& v, const CallArgs& a) {
  return StringTransform(v, a, "lower", PyLower);
}
absl::StatusOr<Value> Capitalize(const Value& v, const CallArgs& a) {
  return StringTransform(v, a, "capitalize", PyCapitalize);
}
absl::StatusOr<Value> Title(const Value& v, const CallArgs& a) {
  ASSIGN_OR_RETURN(Value out, StringTransform(v, a, "title", JinjaTitle));
  return Value::Str(out.as_string());  // "".join(...) of the words is a plain str
}

absl::StatusOr<Value> Trim(const Value& input, const CallArgs& args) {
  ASSIGN_OR_RETURN(BoundArgs b, BindArgs({"trim", {"chars"}}, args));
  ASSIGN_OR_RETURN(std::string s, SoftStr(input));
  std::optional<std::string> chars;
  Value c = b.Get(0);
  if (c.is_string()) {
    chars = c.as_string();
  } else if (!c.is_none()) {
    return TypeError(StrCat("strip arg must be None or str, not ", PyTypeName(c)));
  }
  return AsMarkupLike(input, Value::Str(PyStrip(s, chars, true, true)));
}

absl::StatusOr<Value> StringFilter(const Value& input, const CallArgs& args) {
  RETURN_IF_ERROR(BindArgs({"string", {}}, args).status());
  ASSIGN_OR_RETURN(std::string s, SoftStr(input));
  return AsMarkupLike(input, Value::Str(std::move(s)));
}

absl::StatusOr<Value> Safe(const Value& input, const CallArgs& args) {
  RETURN_IF_ERROR(BindArgs({"safe", {}}, args).status());
  ASSIGN_OR_RETURN(std::string s, SoftStr(input));
  return Value::Markup(std::move(s));
}

absl::StatusOr<Value> Escape(const Value& input, const CallArgs& args) {
  RETURN_IF_ERROR(BindArgs({"escape", {}}, args).status());
  return EscapeToMarkup(input);
}

absl::StatusOr<Value> ForceEscape(const Value& input, const CallArgs& args) {
  RETURN_IF_ERROR(BindArgs({"forceescape", {}}, args).status());
  ASSIGN_OR_RETURN(std::string s, SoftStr(input));
  return Value::Markup(HtmlEscape(s));
}

absl::StatusOr<Value> Replace(const Value& input, const CallArgs& args) {
  ASSIGN_OR_RETURN(BoundArgs b, BindArgs({"replace", {"old", "new", "count"}, 2}, args));
  ASSIGN_OR_RETURN(std::string s, SoftStr(input));
  ASSIGN_OR_RETURN(std::string old_sub, SoftStr(b.Get(0)));
  ASSIGN_OR_RETURN(std::string new_sub, SoftStr(b.Get(1)));
  Value count = b.Get(2);
  if (!count.is_none() && !count.is_integral()) {
    return TypeError(
        StrCat("'", PyTypeName(count), "' object cannot be interpreted as an integer"));
  }
  return Value::Str(PyReplace(s, old_sub, new_sub, count.is_none() ? -1 : count.as_integral()));
}

// printf-style: "%s, %s"|format(a, b) or "%(x)s"|format(x=1).
absl::StatusOr<Value> Format(const Value& input, const CallArgs& args) {
  if (!args.positional.empty() && !args.keyword.empty()) {
    return absl::InvalidArgumentError(
        "can't handle positional and keyword arguments at the same time");
  }
  ASSIGN_OR_RETURN(std::string s, SoftStr(input));
  Value format = AsMarkupLike(input, Value::Str(std::move(s)));
  if (!args.keyword.empty()) {
    Dict kwargs;
    for (const auto& [k, v] : args.keyword) kwargs.Set(Value::Str(k), v);
    return BinaryOp("%", format, Value::MakeDict(std::move(kwargs)));
  }
  return BinaryOp("%", format, Value::Seq(args.positional, SeqKind::kTuple));
}

absl::StatusOr<Value> Center(const Value& input, const CallArgs& args) {
  ASSIGN_OR_RETURN(BoundArgs b, BindArgs({"center", {"width"}}, args));
  Value width = b.Get(0, Value::Int(80));
  if (!width.is_integral()) {
    return TypeError(
        StrCat("'", PyTypeName(width), "' object cannot be interpreted as an integer"));
  }
  ASSIGN_OR_RETURN(std::string s, SoftStr(input));
  return AsMarkupLike(input, Value::Str(PyPad(s, width.as_integral(), " ", "center")));
}

absl::StatusOr<Value> LengthFilter(const Value& input, const CallArgs& args) {
  RETURN_IF_ERROR(BindArgs({"length", {}}, args).status());
  ASSIGN_OR_RETURN(int64_t n, Length(input));
  return Value::Int(n);
}

absl::StatusOr<Value> Default(const Value& input, const CallArgs& args) {
  ASSIGN_OR_RETURN(BoundArgs b, BindArgs({"default", {"default_value", "boolean"}}, args));
  bool boolean = Truthy(b.Get(1, Value::Bool(false)));
  if (input.is_undefined() || (boolean && !Truthy(input))) return b.Get(0, Value::Str(""));
  return input;
}

absl::StatusOr<Value> Abs(const Value& input, const CallArgs& args) {
  RETURN_IF_ERROR(BindArgs({"abs", {}}, args).status());
  if (input.is_float()) return Value::Float(std::fabs(input.as_float()));
  if (input.is_integral()) {
    if (input.as_integral() == INT64_MIN) return absl::InvalidArgumentError("integer overflow");
    return Value::Int(std::llabs(input.as_integral()));
  }
  return TypeError(StrCat("bad operand type for abs(): '", PyTypeName(input), "'"));
}

// Python float(str): optional sign, digits with single underscores, optional
// fraction and exponent, or inf/infinity/nan; surrounding whitespace allowed.
std::optional<double> ParsePyFloat(const std::string& text) {
  std::string s = PyStrip(text, std::nullopt, true, true);
  std::string lowered = PyLower(s);
  std::string body = lowered;
  if (!body.empty() && (body[0] == '+' || body[0] == '-')) body = body.substr(1);
  if (body == "inf" || body == "infinity" || body == "nan") {
    double v = body == "nan" ? std::nan("") : HUGE_VAL;
    return lowered[0] == '-' ? -v : v;
  }
  std::string clean;
  size_t i = 0;
  auto digits = [&](bool required) {
    size_t start = clean.size();
    while (i < body.size()) {
      if (body[i] >= '0' && body[i] <= '9') {
        clean.push_back(body[i++]);
      } else if (body[i] == '_' && clean.size() > start && i + 1 < body.size() &&
                 body[i + 1] >= '0' && body[i + 1] <= '9') {
        ++i;
      } else {
        break;
      }
    }
    return !required || clean.size() > start;
  };
  bool int_part = digits(false);
  bool frac_part = false;
  if (i < body.size() && body[i] == '.') {
    clean.push_back(body[i++]);
    size_t before = clean.size();
    digits(false);
    frac_part = clean.size() > before;
  }
  if (!int_part && !frac_part) return std::nullopt;
  if (i < body.size() && body[i] == 'e') {
    clean.push_back(body[i++]);
    if (i < body.size() && (body[i] == '+' || body[i] == '-')) clean.push_back(body[i++]);
    if (!digits(true)) return std::nullopt;
  }
  if (i != body.size()) return std::nullopt;
  double v = std::strtod(clean.c_str(), nullptr);
  return lowered[0] == '-' ? -v : v;
}

// Python int(str, base) for bases 2..36 and 0; nullopt if it would raise.
std::optional<int64_t> ParsePyInt(const std::string& text, int64_t base) {
  std::string s = PyStrip(text, std::nullopt, true, true);
  bool negative = false;
  size_t i = 0;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) negative = s[i++] == '-';
  auto has_prefix = [&](char p) {
    return i + 1 < s.size() && s[i] == '0' && (s[i + 1] == p || s[i + 1] == p - 32);
  };
  bool prefixed = false;
  if (base == 0) {
    base = has_prefix('x') ? 16 : has_prefix('o') ? 8 : has_prefix('b') ? 2 : 10;
    prefixed = base != 10;
  } else if ((base == 16 && has_prefix('x')) || (base == 8 && has_prefix('o')) ||
             (base == 2 && has_prefix('b'))) {
    prefixed = true;
  }
  if (base < 2 || base > 36) return std::nullopt;
  if (prefixed) {
    i += 2;
    if (i < s.size() && s[i] == '_') ++i;
  }
  __int128 value = 0;
  bool any = false;
  bool last_underscore = false;
  for (; i < s.size(); ++i) {
    char c = s[i];
    if (c == '_') {
      if (!any || last_underscore) return std::nullopt;
      last_underscore = true;
      continue;
    }
    int d = (c >= '0' && c <= '9')   ? c - '0'
            : (c >= 'a' && c <= 'z') ? c - 'a' + 10
            : (c >= 'A' && c <= 'Z') ? c - 'A' + 10
                                     : 99;
    if (d >= base) return std::nullopt;
    value = value * base + d;
    if (value > static_cast<__int128>(INT64_MAX) + 1) return std::nullopt;
    any = true;
    last_underscore = false;
  }
  if (!any || last_underscore) return std::nullopt;
  if (negative) value = -value;
  if (value > INT64_MAX || value < INT64_MIN) return std::nullopt;
  return static_cast<int64_t>(value);
}

absl::StatusOr<Value> Int(const Value& input, const CallArgs& args) {
  ASSIGN_OR_RETURN(BoundArgs b, BindArgs({"int", {"default", "base"}}, args));
  Value fallback = b.Get(0, Value::Int(0));
  if (input.is_undefined()) return UndefinedError(input);
  if (input.is_integral()) return Value::Int(input.as_integral());
  // Python ints are unbounded; past 64 bits this fails rather than return a wrong number.
  auto truncate = [&](double d) -> absl::StatusOr<Value> {
    if (std::isnan(d)) return fallback;
    if (std::fabs(d) >= 9.2e18) {
      return absl::OutOfRangeError("int filter: the value does not fit in 64 bits");
    }
    return Value::Int(static_cast<int64_t>(d));
  };
  if (input.is_float()) {
    if (std::isinf(input.as_float())) {
      return absl::InvalidArgumentError("cannot convert float infinity to integer");
    }
    return truncate(input.as_float());
  }
  if (input.is_string()) {
    Value base = b.Get(1, Value::Int(10));
    if (!base.is_integral()) return fallback;
    if (auto i = ParsePyInt(input.as_string(), base.as_integral())) return Value::Int(*i);
    if (auto f = ParsePyFloat(input.as_string())) {
      if (std::isinf(*f)) return fallback;  // OverflowError is caught here in jinja2
      return truncate(*f);
    }
  }
  return fallback;
}

absl::StatusOr<Value> Float(const Value& input, const CallArgs& args) {
  ASSIGN_OR_RETURN(BoundArgs b, BindArgs({"float", {"default"}}, args));
  if (input.is_undefined()) return UndefinedError(input);
  if (input.is_number()) return Value::Float(input.as_double());
  if (input.is_string()) {
    if (auto f = ParsePyFloat(input.as_string())) return Value::Float(*f);
  }
  return b.Get(0, Value::Float(0.0));
}

// Python round(x, ndigits) on a float: correctly rounded, ties to even.
double PyRound(double x, int64_t ndigits) {
  if (!std::isfinite(x)) return x;
  if (ndigits >= 0) {
    if (ndigits > 308) return x;
    char buf[512];
    std::snprintf(buf, sizeof(buf), "%.*f", static_cast<int>(ndigits), x);
    return std::strtod(buf, nullptr);
  }
  double scale = std::pow(10.0, static_cast<double>(-ndigits));
  return std::nearbyint(x / scale) * scale;
}

absl::StatusOr<Value> Round(const Value& input, const CallArgs& args) {
  ASSIGN_OR_RETURN(BoundArgs b, BindArgs({"round", {"precision", "method"}}, args));
  Value precision = b.Get(0, Value::Int(0));
  Value method = b.Get(1, Value::Str("common"));
  if (!method.is_string() || (method.as_string() != "common" && method.as_string() != "ceil" &&
                              method.as_string() != "floor")) {
    return absl::InvalidArgumentError("method must be common, ceil or floor");
  }
  if (!precision.is_integral()) {
    return TypeError(
        StrCat("'", PyTypeName(precision), "' object cannot be interpreted as an integer"));
  }
  if (input.is_undefined()) return TypeError("type Undefined doesn't define __round__ method");
  if (!input.is_number()) {
    return TypeError(StrCat("type ", PyTypeName(input), " doesn't define __round__ method"));
  }
  int64_t digits = precision.as_integral();
  if (method.as_string() == "common") {
    if (input.is_integral()) {
      if (digits >= 0) return Value::Int(input.as_integral());
      double r = PyRound(static_cast<double>(input.as_integral()), digits);
      return Value::Int(static_cast<int64_t>(r));
    }
    return Value::Float(PyRound(input.as_float(), digits));
  }
  double scale = std::pow(10.0, static_cast<double>(digits));
  double scaled = input.as_double() * scale;
  double r = method.as_string() == "ceil" ? std::ceil(scaled) : std::floor(scaled);
  return Value::Float(r / scale);
}

absl::StatusOr<Value> Indent(const Value& input, const CallArgs& args) {
  ASSIGN_OR_RETURN(BoundArgs b, BindArgs({"indent", {"width", "first", "blank"}}, args));
  if (input.is_undefined()) return UndefinedError(input);
  if (!input.is_string()) {
    return TypeError(
        StrCat("unsupported operand type(s) for +=: '", PyTypeName(input), "' and 'str'"));
  }
  Value width = b.Get(0, Value::Int(4));
  std::string indention;
  if (width.is_string()) {
    indention = width.as_string();
  } else if (width.is_integral()) {
    indention.assign(
        static_cast<size_t>(std::max<int64_t>(0, std::min<int64_t>(width.as_integral(), 1 << 20))),
        ' ');
  } else {
    return TypeError(
        StrCat("can't multiply sequence by non-int of type '", PyTypeName(width), "'"));
  }
  std::vector<std::string> lines = PySplitLines(input.as_string() + "\n", false);
  std::string rv;
  if (Truthy(b.Get(2, Value::Bool(false)))) {
    for (size_t i = 0; i < lines.size(); ++i) {
      if (i > 0) StrAppend(&rv, "\n", indention);
      rv.append(lines[i]);
    }
  } else {
    rv = lines.empty() ? "" : lines[0];
    for (size_t i = 1; i < lines.size(); ++i) {
      rv.append("\n");
      if (!lines[i].empty()) rv.append(indention);
      rv.append(lines[i]);
    }
  }
  if (Truthy(b.Get(1, Value::Bool(false)))) rv = indention + rv;
  return AsMarkupLike(input, Value::Str(std::move(rv)));
}

absl::StatusOr<Value> WordCount(const Value& input, const CallArgs& args) {
  RETURN_IF_ERROR(BindArgs({"wordcount", {}}, args).status());
  ASSIGN_OR_RETURN(std::string s, SoftStr(input));
  int64_t words = 0;
  bool in_word = false;
  for (char32_t c : DecodeUtf8(s)) {
    bool word_char = c == '_' || IsPyDigit(c) || IsPyAlpha(c);  // the regex \w
    if (word_char && !in_word) ++words;
    in_word = word_char;
  }
  return Value::Int(words);
}

absl::StatusOr<Value> Attr(const Value& input, const CallArgs& args) {
  ASSIGN_OR_RETURN(BoundArgs b, BindArgs({"attr", {"name"}, 1}, args));
  if (input.is_undefined()) return UndefinedError(input);
  Value name = b.Get(0);
  if (!name.is_string()) return TypeError("attribute name must be string");
  if (std::optional<Value> v = GetPythonAttribute(input, name.as_string())) return *v;
  return Value::Undefined(StrCat(PyStringRepr(StrCat(PyTypeName(input), " object")),
                                 " has no attribute ", PyStringRepr(name.as_string())));
}

// Hugging Face's tojson: json.dumps(x, ensure_ascii=False, indent=indent,
// separators=separators, sort_keys=sort_keys).
absl::StatusOr<Value> ToJson(const Value& input, const CallArgs& args) {
  ASSIGN_OR_RETURN(
      BoundArgs b,
      BindArgs({"tojson", {"ensure_ascii", "indent", "separators", "sort_keys"}}, args));
  JsonDumpOptions options;
  options.ensure_ascii = Truthy(b.Get(0, Value::Bool(false)));
  Value indent = b.Get(1);
  if (indent.is_string()) {
    options.indent = indent.as_string();
  } else if (indent.is_integral()) {
    options.indent = std::string(
        static_cast<size_t>(std::max<int64_t>(0, std::min<int64_t>(indent.as_integral(), 1 << 10))),
        ' ');
  } else if (!indent.is_none()) {
    return TypeError(
        StrCat("can't multiply sequence by non-int of type '", PyTypeName(indent), "'"));
  }
  Value separators = b.Get(2);
  if (!separators.is_none()) {
    if (!separators.is_sequence() || separators.as_seq().items.size() != 2 ||
        !separators.as_seq().items[0].is_string() || !separators.as_seq().items[1].is_string()) {
      return TypeError("separators must be a pair of strings");
    }
    options.item_separator = separators.as_seq().items[0].as_string();
    options.key_separator = separators.as_seq().items[1].as_string();
  }
  options.sort_keys = Truthy(b.Get(3, Value::Bool(false)));
  ASSIGN_OR_RETURN(std::string json, DumpPythonJson(input, options));
  return Value::Str(std::move(json));
}

struct FilterEntry {
  std::string_view name;
  FilterFn fn;
};

constexpr FilterEntry kFilters[] = {
    {"abs", Abs},
    {"attr", Attr},
    {"capitalize", Capitalize},
    {"center", Center},
    {"count", LengthFilter},
    {"d", Default},
    {"default", Default},
    {"dictsort", FilterDictSort},
    {"e", Escape},
    {"escape", Escape},
    {"first", FilterFirst},
    {"float", Float},
    {"forceescape", ForceEscape},
    {"format", Format},
    {"indent", Indent},
    {"int", Int},
    {"items", FilterItems},
    {"join", FilterJoin},
    {"last", FilterLast},
    {"length", LengthFilter},
    {"list", FilterList},
    {"lower", Lower},
    {"map", FilterMap},
    {"max", FilterMax},
    {"min", FilterMin},
    {"reject", FilterReject},
    {"rejectattr", FilterRejectAttr},
    {"replace", Replace},
    {"reverse", FilterReverse},
    {"round", Round},
    {"safe", Safe},
    {"select", FilterSelect},
    {"selectattr", FilterSelectAttr},
    {"sort", FilterSort},
    {"string", StringFilter},
    {"sum", FilterSum},
    {"title", Title},
    {"tojson", ToJson},
    {"trim", Trim},
    {"unique", FilterUnique},
    {"upper", Upper},
    {"wordcount", WordCount},
};

FilterFn FindFilter(std::string_view name) {
  for (const FilterEntry& e : kFilters) {
    if (e.name == name) return e.fn;
  }
  return nullptr;
}

}  // namespace

BuiltinSupport GetFilterSupport(std::string_view name) {
  if (FindFilter(name) != nullptr) return BuiltinSupport::kSupported;
  if (std::find(std::begin(kUnsupportedFilters), std::end(kUnsupportedFilters), name) !=
      std::end(kUnsupportedFilters)) {
    return BuiltinSupport::kNotSupported;
  }
  return BuiltinSupport::kUnknown;
}

absl::StatusOr<Value> ApplyFilter(std::string_view name, const Value& input, const CallArgs& args) {
  FilterFn fn = FindFilter(name);
  if (fn == nullptr) return absl::InvalidArgumentError(StrCat("No filter named '", name, "'."));
  return fn(input, args);
}

}  // namespace tokenfab::jinja
