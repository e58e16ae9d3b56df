#include "worker/chat/jinja_methods.h"

#include <algorithm>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "worker/chat/jinja_args.h"
#include "worker/chat/jinja_ops.h"
#include "worker/chat/jinja_text.h"

namespace tokenfab::jinja {
namespace {

using Method = std::function<absl::StatusOr<Value>(const CallArgs&)>;

Value StrList(std::vector<std::string> parts) {
  std::vector<Value> items;
  items.reserve(parts.size());
  for (std::string& p : parts) items.push_back(Value::Str(std::move(p)));
  return Value::Seq(std::move(items));
}

absl::StatusOr<std::optional<std::string>> OptionalString(const BoundArgs& b, size_t i,
                                                          std::string_view what) {
  Value v = b.Get(i);
  if (v.is_none()) return std::optional<std::string>();
  if (!v.is_string()) {
    return TypeError(StrCat(what, " arg must be None or str, not ", PyTypeName(v)));
  }
  return std::optional<std::string>(v.as_string());
}

absl::StatusOr<int64_t> IntArg(const BoundArgs& b, size_t i, int64_t fallback) {
  if (!b.Has(i)) return fallback;
  Value v = b.Get(i);
  if (!v.is_integral()) {
    return TypeError(StrCat("'", PyTypeName(v), "' object cannot be interpreted as an integer"));
  }
  return v.as_integral();
}

absl::StatusOr<std::string> StrArg(const BoundArgs& b, size_t i, std::string_view fn) {
  Value v = b.Get(i);
  if (!v.is_string()) {
    return TypeError(StrCat(fn, "() argument must be str, not ", PyTypeName(v)));
  }
  return v.as_string();
}

// str.format: {} {0} {name} fields with optional !r / !s; format specs are not supported.
absl::StatusOr<std::string> PyFormat(const std::string& fmt, const CallArgs& args) {
  std::string out;
  size_t auto_index = 0;
  bool used_auto = false;
  bool used_manual = false;
  for (size_t i = 0; i < fmt.size(); ++i) {
    char c = fmt[i];
    if (c == '}') {
      if (i + 1 < fmt.size() && fmt[i + 1] == '}') {
        out.push_back('}');
        ++i;
        continue;
      }
      return absl::InvalidArgumentError("Single '}' encountered in format string");
    }
    if (c != '{') {
      out.push_back(c);
      continue;
    }
    if (i + 1 < fmt.size() && fmt[i + 1] == '{') {
      out.push_back('{');
      ++i;
      continue;
    }
    size_t close = fmt.find('}', i);
    if (close == std::string::npos) {
      return absl::InvalidArgumentError("Single '{' encountered in format string");
    }
    std::string field = fmt.substr(i + 1, close - i - 1);
    i = close;
    char conversion = 's';
    if (size_t bang = field.find('!'); bang != std::string::npos) {
      if (bang + 2 != field.size() || (field[bang + 1] != 'r' && field[bang + 1] != 's')) {
        return absl::InvalidArgumentError("unsupported conversion in str.format field");
      }
      conversion = field[bang + 1];
      field.resize(bang);
    }
    if (field.find_first_of(":.[") != std::string::npos) {
      return absl::InvalidArgumentError(
          "str.format specs, attributes and indexes are not supported in chat templates");
    }
    const Value* value = nullptr;
    if (field.empty()) {
      if (used_manual) {
        return absl::InvalidArgumentError(
            "cannot switch from manual field specification to automatic field numbering");
      }
      used_auto = true;
      if (auto_index >= args.positional.size()) {
        return absl::InvalidArgumentError(
            StrCat("Replacement index ", auto_index, " out of range"));
      }
      value = &args.positional[auto_index++];
    } else if (std::all_of(field.begin(), field.end(),
                           [](char d) { return d >= '0' && d <= '9'; })) {
      if (used_auto) {
        return absl::InvalidArgumentError(
            "cannot switch from automatic field numbering to manual field specification");
      }
      used_manual = true;
      size_t index = std::stoul(field);
      if (index >= args.positional.size()) {
        return absl::InvalidArgumentError(StrCat("Replacement index ", index, " out of range"));
      }
      value = &args.positional[index];
    } else {
      for (const auto& [name, v] : args.keyword) {
        if (name == field) value = &v;
      }
      if (value == nullptr) return absl::InvalidArgumentError(StrCat("KeyError: '", field, "'"));
    }
    ASSIGN_OR_RETURN(std::string text, conversion == 'r' ? PyRepr(*value) : PyStr(*value));
    out.append(text);
  }
  return out;
}

// Byte offset -> code point index, for find() results.
int64_t CodePointIndex(const std::string& s, size_t byte_offset) {
  return CodePointCount(std::string_view(s).substr(0, byte_offset));
}

bool AllCodePoints(const std::string& s, bool (*pred)(char32_t)) {
  std::u32string cps = DecodeUtf8(s);
  return !cps.empty() && std::all_of(cps.begin(), cps.end(), pred);
}

bool IsAlnumCp(char32_t c) { return IsPyDigit(c) || IsPyAlpha(c); }

std::optional<Method> StringMethod(const std::string& s, std::string_view name) {
  std::string fn = StrCat("str.", name);
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    bool left = name != "rstrip";
    bool right = name != "lstrip";
    return [s, fn, left, right](const CallArgs& args) -> absl::StatusOr<Value> {
      ASSIGN_OR_RETURN(BoundArgs b, BindArgs({fn, {"chars"}}, args));
      ASSIGN_OR_RETURN(std::optional<std::string> chars, OptionalString(b, 0, fn));
      return Value::Str(PyStrip(s, chars, left, right));
    };
  }
  if (name == "split" || name == "rsplit") {
    bool reverse = name == "rsplit";
    return [s, fn, reverse](const CallArgs& args) -> absl::StatusOr<Value> {
      ASSIGN_OR_RETURN(BoundArgs b, BindArgs({fn, {"sep", "maxsplit"}}, args));
      ASSIGN_OR_RETURN(std::optional<std::string> sep, OptionalString(b, 0, "sep"));
      ASSIGN_OR_RETURN(int64_t maxsplit, IntArg(b, 1, -1));
      if (!sep)
        return StrList(reverse ? PyRSplitWhitespace(s, maxsplit) : PySplitWhitespace(s, maxsplit));
      if (sep->empty()) return absl::InvalidArgumentError("empty separator");
      return StrList(reverse ? PyRSplit(s, *sep, maxsplit) : PySplit(s, *sep, maxsplit));
    };
  }
  if (name == "splitlines") {
    return [s, fn](const CallArgs& args) -> absl::StatusOr<Value> {
      ASSIGN_OR_RETURN(BoundArgs b, BindArgs({fn, {"keepends"}}, args));
      return StrList(PySplitLines(s, Truthy(b.Get(0, Value::Bool(false)))));
    };
  }
  if (name == "startswith" || name == "endswith") {
    bool starts = name == "startswith";
    return [s, fn, starts](const CallArgs& args) -> absl::StatusOr<Value> {
      ASSIGN_OR_RETURN(BoundArgs b, BindArgs({fn, {"prefix"}, 1}, args));
      Value p = b.Get(0);
      std::vector<Value> options;
      if (p.is_sequence() && p.as_seq().kind == SeqKind::kTuple) {
        options = p.as_seq().items;
      } else {
        options.push_back(p);
      }
      for (const Value& o : options) {
        if (!o.is_string()) {
          return TypeError(
              StrCat(fn, " first arg must be str or a tuple of str, not ", PyTypeName(o)));
        }
        const std::string& x = o.as_string();
        bool hit =
            x.size() <= s.size() && (starts ? s.compare(0, x.size(), x) == 0
                                            : s.compare(s.size() - x.size(), x.size(), x) == 0);
        if (hit) return Value::Bool(true);
      }
      return Value::Bool(false);
    };
  }
  using Transform = std::string (*)(std::string_view);
  Transform transform = nullptr;
  if (name == "upper") transform = PyUpper;
  if (name == "lower" || name == "casefold") transform = PyLower;
  if (name == "title") transform = PyTitle;
  if (name == "capitalize") transform = PyCapitalize;
  if (name == "swapcase") transform = PySwapcase;
  if (transform != nullptr) {
    return [s, fn, transform](const CallArgs& args) -> absl::StatusOr<Value> {
      RETURN_IF_ERROR(BindArgs({fn, {}}, args).status());
      return Value::Str(transform(s));
    };
  }
  if (name == "replace") {
    return [s, fn](const CallArgs& args) -> absl::StatusOr<Value> {
      ASSIGN_OR_RETURN(BoundArgs b, BindArgs({fn, {"old", "new", "count"}, 2}, args));
      ASSIGN_OR_RETURN(std::string old_sub, StrArg(b, 0, fn));
      ASSIGN_OR_RETURN(std::string new_sub, StrArg(b, 1, fn));
      ASSIGN_OR_RETURN(int64_t count, IntArg(b, 2, -1));
      return Value::Str(PyReplace(s, old_sub, new_sub, count));
    };
  }
  if (name == "find" || name == "rfind" || name == "index" || name == "rindex" || name == "count") {
    std::string method(name);
    return [s, fn, method](const CallArgs& args) -> absl::StatusOr<Value> {
      ASSIGN_OR_RETURN(BoundArgs b, BindArgs({fn, {"sub"}, 1}, args));
      ASSIGN_OR_RETURN(std::string sub, StrArg(b, 0, fn));
      if (method == "count") return Value::Int(PyCount(s, sub));
      size_t pos = method[0] == 'r' ? s.rfind(sub) : s.find(sub);
      if (pos == std::string::npos) {
        if (method == "find" || method == "rfind") return Value::Int(-1);
        return absl::InvalidArgumentError("substring not found");
      }
      return Value::Int(CodePointIndex(s, pos));
    };
  }
  if (name == "join") {
    return [s, fn](const CallArgs& args) -> absl::StatusOr<Value> {
      ASSIGN_OR_RETURN(BoundArgs b, BindArgs({fn, {"iterable"}, 1}, args));
      ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(b.Get(0)));
      std::string out;
      for (size_t i = 0; i < items.size(); ++i) {
        if (!items[i].is_string()) {
          return TypeError(StrCat("sequence item ", i, ": expected str instance, ",
                                  PyTypeName(items[i]), " found"));
        }
        if (i > 0) out.append(s);
        out.append(items[i].as_string());
      }
      return Value::Str(std::move(out));
    };
  }
  if (name == "center" || name == "ljust" || name == "rjust") {
    std::string method(name);
    return [s, fn, method](const CallArgs& args) -> absl::StatusOr<Value> {
      ASSIGN_OR_RETURN(BoundArgs b, BindArgs({fn, {"width", "fillchar"}, 1}, args));
      ASSIGN_OR_RETURN(int64_t width, IntArg(b, 0, 0));
      Value fill = b.Get(1, Value::Str(" "));
      if (!fill.is_string() || CodePointCount(fill.as_string()) != 1) {
        return TypeError("The fill character must be exactly one character long");
      }
      return Value::Str(PyPad(s, width, fill.as_string(), method));
    };
  }
  if (name == "zfill") {
    return [s, fn](const CallArgs& args) -> absl::StatusOr<Value> {
      ASSIGN_OR_RETURN(BoundArgs b, BindArgs({fn, {"width"}, 1}, args));
      ASSIGN_OR_RETURN(int64_t width, IntArg(b, 0, 0));
      int64_t len = CodePointCount(s);
      if (width <= len) return Value::Str(s);
      size_t sign = !s.empty() && (s[0] == '+' || s[0] == '-') ? 1 : 0;
      return Value::Str(s.substr(0, sign) + std::string(static_cast<size_t>(width - len), '0') +
                        s.substr(sign));
    };
  }
  if (name == "format") {
    return [s](const CallArgs& args) -> absl::StatusOr<Value> {
      ASSIGN_OR_RETURN(std::string out, PyFormat(s, args));
      return Value::Str(std::move(out));
    };
  }
  if (name == "removeprefix" || name == "removesuffix") {
    bool prefix = name == "removeprefix";
    return [s, fn, prefix](const CallArgs& args) -> absl::StatusOr<Value> {
      ASSIGN_OR_RETURN(BoundArgs b, BindArgs({fn, {"affix"}, 1}, args));
      ASSIGN_OR_RETURN(std::string x, StrArg(b, 0, fn));
      if (x.size() <= s.size()) {
        if (prefix && s.compare(0, x.size(), x) == 0) return Value::Str(s.substr(x.size()));
        if (!prefix && s.compare(s.size() - x.size(), x.size(), x) == 0) {
          return Value::Str(s.substr(0, s.size() - x.size()));
        }
      }
      return Value::Str(s);
    };
  }
  using Predicate = bool (*)(const std::string&);
  Predicate predicate = nullptr;
  if (name == "isdigit" || name == "isdecimal" || name == "isnumeric") {
    predicate = [](const std::string& x) { return AllCodePoints(x, IsPyDigit); };
  } else if (name == "isalpha") {
    predicate = [](const std::string& x) { return AllCodePoints(x, IsPyAlpha); };
  } else if (name == "isalnum") {
    predicate = [](const std::string& x) { return AllCodePoints(x, IsAlnumCp); };
  } else if (name == "isspace") {
    predicate = [](const std::string& x) { return AllCodePoints(x, IsPySpace); };
  } else if (name == "isupper" || name == "islower") {
    predicate = name == "isupper" ? +[](const std::string& x) {
      std::u32string cps = DecodeUtf8(x);
      bool cased = false;
      for (char32_t c : cps) {
        if (IsPyLower(c)) return false;
        cased = cased || IsPyUpper(c);
      }
      return cased;
    }
                                  : +[](const std::string& x) {
      std::u32string cps = DecodeUtf8(x);
      bool cased = false;
      for (char32_t c : cps) {
        if (IsPyUpper(c)) return false;
        cased = cased || IsPyLower(c);
      }
      return cased;
    };
  }
  if (predicate != nullptr) {
    return [s, fn, predicate](const CallArgs& args) -> absl::StatusOr<Value> {
      RETURN_IF_ERROR(BindArgs({fn, {}}, args).status());
      return Value::Bool(predicate(s));
    };
  }
  return std::nullopt;
}

constexpr std::string_view kOtherStrMethods[] = {
    "encode",  "expandtabs", "format_map", "isascii",    "isidentifier", "isprintable",
    "istitle", "maketrans",  "partition",  "rpartition", "translate"};
constexpr std::string_view kUnsafeDictMethods[] = {"clear", "pop", "popitem", "setdefault",
                                                   "update"};
constexpr std::string_view kUnsafeListMethods[] = {"append", "clear",  "extend",  "insert",
                                                   "pop",    "remove", "reverse", "sort"};

bool In(std::string_view name, const auto& list) {
  return std::find(std::begin(list), std::end(list), name) != std::end(list);
}

Value UnsupportedMethod(std::string_view type, std::string_view name) {
  std::string fn = StrCat(type, ".", name);
  return Value::Function(fn, [fn](const CallArgs&) -> absl::StatusOr<Value> {
    return absl::InvalidArgumentError(StrCat(fn, "() is not supported in chat templates"));
  });
}

Value Unsafe(std::string_view type, std::string_view name) {
  return Value::Undefined(StrCat("access to attribute ", PyStringRepr(name), " of ",
                                 PyStringRepr(type), " object is unsafe."));
}

std::optional<Value> DictMethod(const Value& obj, std::string_view name) {
  std::string fn = StrCat("dict.", name);
  if (name == "items" || name == "keys" || name == "values") {
    SeqKind kind = name == "items"  ? SeqKind::kDictItems
                   : name == "keys" ? SeqKind::kDictKeys
                                    : SeqKind::kDictValues;
    return Value::Function(fn, [obj, fn, kind](const CallArgs& args) -> absl::StatusOr<Value> {
      RETURN_IF_ERROR(BindArgs({fn, {}}, args).status());
      std::vector<Value> out;
      for (const auto& [k, v] : obj.as_dict().entries) {
        if (kind == SeqKind::kDictItems) {
          out.push_back(Value::Seq({k, v}, SeqKind::kTuple));
        } else {
          out.push_back(kind == SeqKind::kDictKeys ? k : v);
        }
      }
      return Value::Seq(std::move(out), kind);
    });
  }
  if (name == "get") {
    return Value::Function(fn, [obj, fn](const CallArgs& args) -> absl::StatusOr<Value> {
      ASSIGN_OR_RETURN(BoundArgs b, BindArgs({fn, {"key", "default"}, 1}, args));
      if (const Value* v = obj.as_dict().Find(b.Get(0))) return *v;
      return b.Get(1);
    });
  }
  if (In(name, kUnsafeDictMethods)) return Unsafe("dict", name);
  if (name == "copy" || name == "fromkeys") return UnsupportedMethod("dict", name);
  return std::nullopt;
}

std::optional<Value> ListMethod(const Value& obj, std::string_view name) {
  const Sequence& seq = obj.as_seq();
  if (seq.kind != SeqKind::kList && seq.kind != SeqKind::kTuple) return std::nullopt;
  std::string type = seq.kind == SeqKind::kList ? "list" : "tuple";
  std::string fn = StrCat(type, ".", name);
  if (name == "index" || name == "count") {
    bool count = name == "count";
    return Value::Function(
        fn, [obj, fn, count, type](const CallArgs& args) -> absl::StatusOr<Value> {
          ASSIGN_OR_RETURN(BoundArgs b, BindArgs({fn, {"value"}, 1}, args));
          int64_t n = 0;
          const std::vector<Value>& items = obj.as_seq().items;
          for (size_t i = 0; i < items.size(); ++i) {
            if (!PyEquals(items[i], b.Get(0))) continue;
            if (!count) return Value::Int(static_cast<int64_t>(i));
            ++n;
          }
          if (count) return Value::Int(n);
          return absl::InvalidArgumentError(StrCat(type, ".index(x): x not in ", type));
        });
  }
  if (seq.kind == SeqKind::kList && In(name, kUnsafeListMethods)) return Unsafe("list", name);
  if (seq.kind == SeqKind::kList && name == "copy") return UnsupportedMethod("list", name);
  return std::nullopt;
}

// Markup's methods (markupsafe 3): str methods return Markup; replace()
// escapes its replacement, format() and join() escape what they insert.
constexpr std::string_view kMarkupWrappingMethods[] = {
    "capitalize", "title",      "lower",    "upper",        "replace",      "lstrip", "rstrip",
    "strip",      "swapcase",   "casefold", "removeprefix", "removesuffix", "format", "split",
    "rsplit",     "splitlines", "join",     "center",       "ljust",        "rjust",  "zfill"};

Method MarkupMethod(const Value& obj, std::string_view name, Method plain) {
  if (!In(name, kMarkupWrappingMethods)) return plain;
  std::string method(name);
  return [obj, method, plain = std::move(plain)](const CallArgs& args) -> absl::StatusOr<Value> {
    CallArgs escaped = args;
    auto escape = [](Value* v) -> absl::Status {
      if (!v->is_string()) return absl::OkStatus();
      ASSIGN_OR_RETURN(*v, EscapeToMarkup(*v));
      return absl::OkStatus();
    };
    if (method == "format") {
      for (Value& v : escaped.positional) RETURN_IF_ERROR(escape(&v));
      for (auto& [k, v] : escaped.keyword) RETURN_IF_ERROR(escape(&v));
    } else if ((method == "replace" || method == "center" || method == "ljust" ||
                method == "rjust") &&
               escaped.positional.size() >= 2) {
      RETURN_IF_ERROR(escape(&escaped.positional[1]));
    } else if (method == "join" && !escaped.positional.empty()) {
      ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(escaped.positional[0]));
      for (Value& item : items) {
        ASSIGN_OR_RETURN(item, EscapeToMarkup(item));
      }
      escaped.positional[0] = Value::Seq(std::move(items));
    }
    ASSIGN_OR_RETURN(Value result, plain(escaped));
    return AsMarkupLike(obj, std::move(result));
  };
}

}  // namespace

std::optional<Value> LookupMethod(const Value& obj, std::string_view name) {
  switch (obj.kind()) {
    case Value::Kind::kString: {
      if (std::optional<Method> m = StringMethod(obj.as_string(), name)) {
        if (obj.is_markup()) *m = MarkupMethod(obj, name, std::move(*m));
        return Value::Function(StrCat("str.", name), std::move(*m));
      }
      if (In(name, kOtherStrMethods)) return UnsupportedMethod("str", name);
      return std::nullopt;
    }
    case Value::Kind::kDict:
      return DictMethod(obj, name);
    case Value::Kind::kSequence:
      return ListMethod(obj, name);
    default:
      return std::nullopt;
  }
}

}  // namespace tokenfab::jinja
