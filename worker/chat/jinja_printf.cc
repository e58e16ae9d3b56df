#include "worker/chat/jinja_printf.h"

#include <cmath>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "worker/chat/jinja_text.h"

namespace tokenfab::jinja {
namespace {

struct Spec {
  bool left = false, plus = false, space = false, zero = false, alt = false;
  int64_t width = -1;
  int64_t precision = -1;
  char conversion = 0;
};

// Pads `body` (already signed/prefixed) to the spec's width, counting code points.
std::string Pad(std::string body, const Spec& spec, size_t sign_prefix_len, bool numeric) {
  int64_t len = CodePointCount(body);
  if (spec.width <= len) return body;
  size_t fill = static_cast<size_t>(spec.width - len);
  if (spec.left) return body + std::string(fill, ' ');
  if (spec.zero && numeric)
    return body.substr(0, sign_prefix_len) + std::string(fill, '0') + body.substr(sign_prefix_len);
  return std::string(fill, ' ') + body;
}

absl::StatusOr<std::string> FormatInteger(const Value& v, const Spec& spec) {
  char c = spec.conversion;
  bool decimal = c == 'd' || c == 'i' || c == 'u';
  int64_t value;
  if (v.is_integral()) {
    value = v.as_integral();
  } else if (decimal && v.is_float()) {
    double d = v.as_float();
    if (std::isinf(d))
      return absl::InvalidArgumentError("cannot convert float infinity to integer");
    if (std::isnan(d)) return absl::InvalidArgumentError("cannot convert float NaN to integer");
    if (std::fabs(d) >= 9.2e18)
      return absl::InvalidArgumentError("integer overflow in %d formatting");
    value = static_cast<int64_t>(d);
  } else {
    return TypeError(StrCat("%", std::string(1, c),
                            " format: ", decimal ? "a real number" : "an integer",
                            " is required, not ", PyTypeName(v)));
  }
  unsigned __int128 magnitude = value < 0 ? -static_cast<__int128>(value) : value;
  int base = decimal ? 10 : (c == 'o' ? 8 : 16);
  const char* digits_of = c == 'X' ? "0123456789ABCDEF" : "0123456789abcdef";
  std::string digits;
  do {
    digits.insert(digits.begin(), digits_of[static_cast<int>(magnitude % base)]);
    magnitude /= base;
  } while (magnitude > 0);
  if (spec.precision > static_cast<int64_t>(digits.size())) {
    digits.insert(0, static_cast<size_t>(spec.precision) - digits.size(), '0');
  }
  std::string prefix = value < 0 ? "-" : spec.plus ? "+" : spec.space ? " " : "";
  if (spec.alt && c == 'o') prefix += "0o";
  if (spec.alt && (c == 'x' || c == 'X')) prefix += c == 'x' ? "0x" : "0X";
  return Pad(prefix + digits, spec, prefix.size(), true);
}

absl::StatusOr<std::string> FormatFloat(const Value& v, const Spec& spec) {
  if (!v.is_number()) return TypeError(StrCat("must be real number, not ", PyTypeName(v)));
  double d = v.as_double();
  std::string fmt = "%";
  if (spec.left) fmt += '-';
  if (spec.plus) fmt += '+';
  if (spec.space) fmt += ' ';
  if (spec.zero && std::isfinite(d)) fmt += '0';
  if (spec.alt) fmt += '#';
  if (spec.width >= 0) fmt += std::to_string(std::min<int64_t>(spec.width, 1 << 16));
  fmt += '.' + std::to_string(spec.precision >= 0 ? std::min<int64_t>(spec.precision, 1 << 10) : 6);
  fmt += spec.conversion;
  int n = std::snprintf(nullptr, 0, fmt.c_str(), d);
  std::string out(static_cast<size_t>(n) + 1, '\0');
  std::snprintf(out.data(), out.size(), fmt.c_str(), d);
  out.resize(static_cast<size_t>(n));
  return out;
}

absl::StatusOr<std::string> FormatOne(const Value& v, const Spec& spec) {
  switch (spec.conversion) {
    case 's':
    case 'r':
    case 'a': {
      ASSIGN_OR_RETURN(std::string s, spec.conversion == 's' ? PyStr(v) : PyRepr(v));
      if (spec.precision >= 0) {
        std::u32string cps = DecodeUtf8(s);
        if (static_cast<int64_t>(cps.size()) > spec.precision)
          s = EncodeUtf8(cps.substr(0, spec.precision));
      }
      return Pad(s, spec, 0, false);
    }
    case 'c': {
      std::string s;
      if (v.is_integral()) {
        if (v.as_integral() < 0 || v.as_integral() > 0x10FFFF) {
          return absl::InvalidArgumentError("%c arg not in range(0x110000)");
        }
        AppendUtf8(static_cast<char32_t>(v.as_integral()), &s);
      } else if (v.is_string() && CodePointCount(v.as_string()) == 1) {
        s = v.as_string();
      } else {
        return TypeError("%c requires int or char");
      }
      return Pad(s, spec, 0, false);
    }
    case 'd':
    case 'i':
    case 'u':
    case 'o':
    case 'x':
    case 'X':
      return FormatInteger(v, spec);
    case 'e':
    case 'E':
    case 'f':
    case 'F':
    case 'g':
    case 'G':
      return FormatFloat(v, spec);
    default:
      return absl::InvalidArgumentError(
          StrCat("unsupported format character '", std::string(1, spec.conversion), "'"));
  }
}

}  // namespace

absl::StatusOr<Value> PyPercentFormat(const std::string& format, const Value& args) {
  bool is_tuple = args.is_sequence() && args.as_seq().kind == SeqKind::kTuple;
  std::vector<Value> arglist = is_tuple ? args.as_seq().items : std::vector<Value>{args};
  // CPython treats any non-tuple, non-str object with __getitem__ as a mapping.
  bool mapping_like = !is_tuple && (args.is_dict() || args.is_sequence());
  size_t next = 0;
  auto next_arg = [&]() -> absl::StatusOr<Value> {
    if (next >= arglist.size()) return TypeError("not enough arguments for format string");
    return arglist[next++];
  };
  std::string out;
  size_t i = 0;
  while (i < format.size()) {
    char ch = format[i++];
    if (ch != '%') {
      out.push_back(ch);
      continue;
    }
    if (i >= format.size()) return absl::InvalidArgumentError("incomplete format");
    std::optional<Value> keyed;
    if (format[i] == '(') {
      if (!args.is_dict()) return TypeError("format requires a mapping");
      int depth = 1;
      size_t start = ++i;
      while (i < format.size() && depth > 0) {
        if (format[i] == '(') ++depth;
        if (format[i] == ')') --depth;
        ++i;
      }
      if (depth > 0) return absl::InvalidArgumentError("incomplete format key");
      std::string key = format.substr(start, i - start - 1);
      const Value* v = args.as_dict().FindString(key);
      if (v == nullptr) return absl::InvalidArgumentError(StrCat("KeyError: ", PyStringRepr(key)));
      keyed = *v;
      next = arglist.size();  // a mapping is never "not all converted"
    }
    Spec spec;
    for (; i < format.size(); ++i) {
      char f = format[i];
      if (f == '-')
        spec.left = true;
      else if (f == '+')
        spec.plus = true;
      else if (f == ' ')
        spec.space = true;
      else if (f == '0')
        spec.zero = true;
      else if (f == '#')
        spec.alt = true;
      else
        break;
    }
    auto number = [&](int64_t* field) -> absl::Status {
      if (i < format.size() && format[i] == '*') {
        ++i;
        ASSIGN_OR_RETURN(Value w, next_arg());
        if (!w.is_integral()) return TypeError("* wants int");
        *field = w.as_integral();
        if (*field < 0 && field == &spec.width) {
          spec.left = true;
          *field = -*field;
        }
        return absl::OkStatus();
      }
      if (i < format.size() && format[i] >= '0' && format[i] <= '9') {
        *field = 0;
        while (i < format.size() && format[i] >= '0' && format[i] <= '9') {
          *field = std::min<int64_t>(*field * 10 + (format[i++] - '0'), 1 << 20);
        }
      }
      return absl::OkStatus();
    };
    RETURN_IF_ERROR(number(&spec.width));
    if (i < format.size() && format[i] == '.') {
      ++i;
      spec.precision = 0;
      RETURN_IF_ERROR(number(&spec.precision));
    }
    while (i < format.size() && (format[i] == 'h' || format[i] == 'l' || format[i] == 'L')) ++i;
    if (i >= format.size()) return absl::InvalidArgumentError("incomplete format");
    spec.conversion = format[i++];
    if (spec.conversion == '%') {
      out.push_back('%');
      continue;
    }
    Value v;
    if (keyed) {
      v = *keyed;
    } else {
      ASSIGN_OR_RETURN(v, next_arg());
    }
    ASSIGN_OR_RETURN(std::string piece, FormatOne(v, spec));
    out.append(piece);
  }
  if (next < arglist.size() && !(mapping_like && !is_tuple)) {
    return TypeError("not all arguments converted during string formatting");
  }
  return Value::Str(std::move(out));
}

}  // namespace tokenfab::jinja
