#include "worker/chat/jinja_lexer.h"

#include <algorithm>
#include <cstdlib>
#include <optional>

#include "absl/status/status.h"
#include "common/strings.h"
#include "worker/chat/jinja_text.h"

namespace tokenfab::jinja {

std::string LocatedMessage(SourceLocation loc, std::string_view message) {
  return StrCat("line ", loc.line, ", column ", loc.column, ": ", message);
}

namespace {

// jinja2 turns \r\n and \r into \n and drops one trailing newline.
std::string NormalizeNewlines(std::string_view source) {
  std::string out;
  out.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      out.push_back('\n');
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      out.push_back(source[i]);
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsNameStart(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
         (static_cast<unsigned char>(c) & 0x80);
}
bool IsNameChar(char c) { return IsNameStart(c) || IsDigit(c); }

// Python's unicode-escape codec, applied as jinja2 does after turning every
// non-ASCII character into a backslash escape.
absl::StatusOr<std::string> UnescapeStringLiteral(std::string_view body) {
  std::string ascii;
  for (char32_t c : DecodeUtf8(body)) {
    if (c < 0x80) {
      ascii.push_back(static_cast<char>(c));
    } else {
      char buf[16];
      if (c <= 0xFF) {
        std::snprintf(buf, sizeof(buf), "\\x%02x", static_cast<unsigned>(c));
      } else if (c <= 0xFFFF) {
        std::snprintf(buf, sizeof(buf), "\\u%04x", static_cast<unsigned>(c));
      } else {
        std::snprintf(buf, sizeof(buf), "\\U%08x", static_cast<unsigned>(c));
      }
      ascii.append(buf);
    }
  }
  std::u32string out;
  auto hex_escape = [&](size_t* i, int digits, std::string_view what) -> absl::Status {
    if (*i + digits >= ascii.size()) {
      return absl::InvalidArgumentError(StrCat("truncated ", what, " escape"));
    }
    char32_t v = 0;
    for (int k = 1; k <= digits; ++k) {
      char h = ascii[*i + k];
      int d = IsDigit(h)               ? h - '0'
              : (h >= 'a' && h <= 'f') ? h - 'a' + 10
              : (h >= 'A' && h <= 'F') ? h - 'A' + 10
                                       : -1;
      if (d < 0) return absl::InvalidArgumentError(StrCat("truncated ", what, " escape"));
      v = v * 16 + d;
    }
    if (v > 0x10FFFF) return absl::InvalidArgumentError("illegal Unicode character");
    out.push_back(v);
    *i += digits;
    return absl::OkStatus();
  };
  for (size_t i = 0; i < ascii.size(); ++i) {
    char c = ascii[i];
    if (c != '\\' || i + 1 >= ascii.size()) {
      if (c == '\\') return absl::InvalidArgumentError("\\ at end of string");
      out.push_back(static_cast<unsigned char>(c));
      continue;
    }
    char e = ascii[++i];
    switch (e) {
      case '\n':
        break;
      case '\\':
        out.push_back('\\');
        break;
      case '\'':
        out.push_back('\'');
        break;
      case '"':
        out.push_back('"');
        break;
      case 'a':
        out.push_back(0x07);
        break;
      case 'b':
        out.push_back(0x08);
        break;
      case 'f':
        out.push_back(0x0C);
        break;
      case 'n':
        out.push_back('\n');
        break;
      case 'r':
        out.push_back('\r');
        break;
      case 't':
        out.push_back('\t');
        break;
      case 'v':
        out.push_back(0x0B);
        break;
      case 'x': {
        absl::Status s = hex_escape(&i, 2, "\\xXX");
        if (!s.ok()) return s;
        break;
      }
      case 'u': {
        absl::Status s = hex_escape(&i, 4, "\\uXXXX");
        if (!s.ok()) return s;
        break;
      }
      case 'U': {
        absl::Status s = hex_escape(&i, 8, "\\UXXXXXXXX");
        if (!s.ok()) return s;
        break;
      }
      case 'N':
        return absl::InvalidArgumentError("\\N{...} escapes are not supported");
      default:
        if (e >= '0' && e <= '7') {
          char32_t v = e - '0';
          for (int k = 0;
               k < 2 && i + 1 < ascii.size() && ascii[i + 1] >= '0' && ascii[i + 1] <= '7'; ++k) {
            v = v * 8 + (ascii[++i] - '0');
          }
          out.push_back(v);
        } else {
          out.push_back('\\');
          out.push_back(static_cast<unsigned char>(e));
        }
    }
  }
  return EncodeUtf8(out);
}

class Lexer {
 public:
  explicit Lexer(std::string source) : src_(std::move(source)) {
    line_starts_.push_back(0);
    for (size_t i = 0; i < src_.size(); ++i) {
      if (src_[i] == '\n') line_starts_.push_back(i + 1);
    }
  }

  absl::StatusOr<std::vector<Token>> Run() {
    while (pos_ < src_.size()) {
      absl::Status s = LexRoot();
      if (!s.ok()) return s;
    }
    Token eof;
    eof.kind = TokenKind::kEof;
    eof.loc = Loc(src_.size());
    tokens_.push_back(std::move(eof));
    return std::move(tokens_);
  }

 private:
  // Tokens are located in increasing order, so the column is counted on from
  // the previous location rather than from the start of the line.
  SourceLocation Loc(size_t offset) {
    offset = std::min(offset, src_.size());
    auto it = std::upper_bound(line_starts_.begin(), line_starts_.end(), offset);
    size_t line_index = static_cast<size_t>(it - line_starts_.begin()) - 1;
    size_t start = line_starts_[line_index];
    if (cached_offset_ < start || cached_offset_ > offset) {
      cached_offset_ = start;
      cached_column_ = 1;
    }
    for (size_t i = cached_offset_; i < offset; ++i) {
      if ((static_cast<unsigned char>(src_[i]) & 0xC0) != 0x80) ++cached_column_;
    }
    cached_offset_ = offset;
    return {static_cast<int>(line_index) + 1, cached_column_};
  }

  absl::Status Error(size_t offset, std::string_view message) {
    return absl::InvalidArgumentError(LocatedMessage(Loc(offset), message));
  }

  bool At(size_t p, std::string_view s) const { return src_.compare(p, s.size(), s) == 0; }

  // Python whitespace (str.isspace) starting at byte p; returns its byte length or 0.
  size_t SpaceAt(size_t p) const {
    if (p >= src_.size()) return 0;
    unsigned char b = static_cast<unsigned char>(src_[p]);
    if (b < 0x80) return IsPySpace(b) ? 1 : 0;
    size_t len = (b & 0xE0) == 0xC0 ? 2 : (b & 0xF0) == 0xE0 ? 3 : (b & 0xF8) == 0xF0 ? 4 : 1;
    std::u32string cp = DecodeUtf8(std::string_view(src_).substr(p, len));
    return cp.size() == 1 && IsPySpace(cp[0]) ? len : 0;
  }
  size_t SkipSpace(size_t p) const {
    while (size_t n = SpaceAt(p)) p += n;
    return p;
  }

  void EmitData(std::string text, size_t offset) {
    if (text.empty()) return;
    Token t;
    t.kind = TokenKind::kData;
    t.text = std::move(text);
    t.loc = Loc(offset);
    tokens_.push_back(std::move(t));
  }
  void Emit(TokenKind kind, std::string text, size_t offset) {
    Token t;
    t.kind = kind;
    t.text = std::move(text);
    t.loc = Loc(offset);
    tokens_.push_back(std::move(t));
  }

  // The text before a tag, after the tag's sign and lstrip_blocks are applied.
  std::string StripBeforeTag(std::string_view text, char sign, bool is_variable) const {
    if (sign == '-') {
      std::u32string cps = DecodeUtf8(text);
      size_t end = cps.size();
      while (end > 0 && IsPySpace(cps[end - 1])) --end;
      return EncodeUtf8(std::u32string_view(cps).substr(0, end));
    }
    if (sign != '+' && !is_variable) {
      size_t nl = text.rfind('\n');
      size_t l_pos = nl == std::string_view::npos ? 0 : nl + 1;
      if (l_pos > 0 || line_starting_) {
        std::u32string tail = DecodeUtf8(text.substr(l_pos));
        bool all_space = !tail.empty() && std::all_of(tail.begin(), tail.end(), IsPySpace);
        if (all_space) return std::string(text.substr(0, l_pos));
      }
    }
    return std::string(text);
  }

  absl::Status LexRoot() {
    size_t start = pos_;
    size_t open = std::string::npos;
    for (size_t p = src_.find('{', pos_); p != std::string::npos; p = src_.find('{', p + 1)) {
      if (p + 1 < src_.size() && (src_[p + 1] == '{' || src_[p + 1] == '%' || src_[p + 1] == '#')) {
        open = p;
        break;
      }
    }
    if (open == std::string::npos) {
      EmitData(src_.substr(pos_), pos_);
      pos_ = src_.size();
      return absl::OkStatus();
    }
    char kind = src_[open + 1];
    size_t after = open + 2;
    char sign = 0;
    if (after < src_.size() && (src_[after] == '-' || src_[after] == '+')) sign = src_[after++];
    std::string_view text = std::string_view(src_).substr(start, open - start);

    if (kind == '%') {
      size_t raw_end = MatchRawBegin(after);
      if (raw_end != std::string::npos) {
        EmitData(StripBeforeTag(text, sign, false), start);
        line_starting_ = src_[raw_end - 1] == '\n';
        return LexRaw(raw_end);
      }
    }
    EmitData(StripBeforeTag(text, sign, kind == '{'), start);
    line_starting_ = false;
    if (kind == '#') return LexComment(open, after);
    Emit(kind == '{' ? TokenKind::kVariableBegin : TokenKind::kBlockBegin, "", open);
    pos_ = after;
    return LexTag(kind == '{', open);
  }

  // `{%[-+]?\s*raw\s*(-%}\s*|%})`, from just after the sign; npos if no match.
  size_t MatchRawBegin(size_t p) const {
    p = SkipSpace(p);
    if (!At(p, "raw")) return std::string::npos;
    p = SkipSpace(p + 3);
    if (At(p, "-%}")) return SkipSpace(p + 3);
    if (At(p, "%}")) return p + 2;
    return std::string::npos;
  }

  absl::Status LexRaw(size_t body_start) {
    for (size_t p = src_.find("{%", body_start); p != std::string::npos;
         p = src_.find("{%", p + 1)) {
      size_t q = p + 2;
      char sign = 0;
      if (q < src_.size() && (src_[q] == '-' || src_[q] == '+')) sign = src_[q++];
      q = SkipSpace(q);
      if (!At(q, "endraw")) continue;
      q = SkipSpace(q + 6);
      size_t end;
      if (At(q, "+%}")) {
        end = q + 3;
      } else if (At(q, "-%}")) {
        end = SkipSpace(q + 3);
      } else if (At(q, "%}")) {
        end = q + 2 + (At(q + 2, "\n") ? 1 : 0);
      } else {
        continue;
      }
      std::string_view text = std::string_view(src_).substr(body_start, p - body_start);
      EmitData(StripBeforeTag(text, sign, false), body_start);
      line_starting_ = src_[end - 1] == '\n';
      pos_ = end;
      return absl::OkStatus();
    }
    return Error(body_start, "Missing end of raw directive");
  }

  absl::Status LexComment(size_t open, size_t p) {
    for (; p < src_.size(); ++p) {
      size_t end = std::string::npos;
      if (At(p, "+#}")) {
        end = p + 3;
      } else if (At(p, "-#}")) {
        end = SkipSpace(p + 3);
      } else if (At(p, "#}")) {
        end = p + 2 + (At(p + 2, "\n") ? 1 : 0);
      }
      if (end != std::string::npos) {
        line_starting_ = src_[end - 1] == '\n';
        pos_ = end;
        return absl::OkStatus();
      }
    }
    return Error(open, "Missing end of comment tag");
  }

  // Tag contents up to and including the closing `}}` or `%}`.
  absl::Status LexTag(bool is_variable, size_t open) {
    std::vector<char> balance;
    while (true) {
      if (pos_ >= src_.size()) {
        return Error(open, is_variable ? "unexpected end of template, expected '}}'"
                                       : "unexpected end of template, expected '%}'");
      }
      if (balance.empty()) {
        size_t end = std::string::npos;
        if (is_variable) {
          if (At(pos_, "-}}")) {
            end = SkipSpace(pos_ + 3);
          } else if (At(pos_, "}}")) {
            end = pos_ + 2;
          }
        } else if (At(pos_, "+%}")) {
          end = pos_ + 3;
        } else if (At(pos_, "-%}")) {
          end = SkipSpace(pos_ + 3);
        } else if (At(pos_, "%}")) {
          end = pos_ + 2 + (At(pos_ + 2, "\n") ? 1 : 0);
        }
        if (end != std::string::npos) {
          Emit(is_variable ? TokenKind::kVariableEnd : TokenKind::kBlockEnd, "", pos_);
          line_starting_ = src_[end - 1] == '\n';
          pos_ = end;
          return absl::OkStatus();
        }
      }
      if (size_t n = SpaceAt(pos_)) {
        pos_ = SkipSpace(pos_ + n);
        continue;
      }
      bool matched = false;
      absl::Status s = LexNumber(&matched);
      if (!s.ok()) return s;
      if (matched) continue;
      char c = src_[pos_];
      if (IsNameStart(c)) {
        size_t b = pos_;
        while (pos_ < src_.size() && IsNameChar(src_[pos_])) ++pos_;
        Emit(TokenKind::kName, src_.substr(b, pos_ - b), b);
        continue;
      }
      if (c == '\'' || c == '"') {
        s = LexString(&matched);
        if (!s.ok()) return s;
        if (matched) continue;
      }
      s = LexOperator(&balance);
      if (!s.ok()) return s;
    }
  }

  // One run of digits with single underscores between them; returns the end or npos.
  size_t DigitRun(size_t p, bool (*is_digit)(char)) const {
    if (p >= src_.size() || !is_digit(src_[p])) return std::string::npos;
    while (p < src_.size()) {
      if (is_digit(src_[p])) {
        ++p;
      } else if (src_[p] == '_' && p + 1 < src_.size() && is_digit(src_[p + 1])) {
        p += 2;
      } else {
        break;
      }
    }
    return p;
  }

  absl::Status LexNumber(bool* matched) {
    *matched = false;
    size_t b = pos_;
    if (!IsDigit(src_[b])) return absl::OkStatus();
    auto strip = [](std::string_view s) {
      std::string out;
      for (char c : s) {
        if (c != '_') out.push_back(c);
      }
      return out;
    };
    // Floats first, as jinja2 tries them first; a float never directly follows a dot.
    if (b == 0 || src_[b - 1] != '.') {
      size_t int_end = DigitRun(b, IsDigit);
      size_t frac_end = std::string::npos;
      if (At(int_end, ".")) frac_end = DigitRun(int_end + 1, IsDigit);
      size_t mant_end = frac_end != std::string::npos ? frac_end : int_end;
      size_t exp_end = std::string::npos;
      if (mant_end < src_.size() && (src_[mant_end] == 'e' || src_[mant_end] == 'E')) {
        size_t q = mant_end + 1;
        if (q < src_.size() && (src_[q] == '+' || src_[q] == '-')) ++q;
        exp_end = DigitRun(q, IsDigit);
      }
      size_t end = exp_end != std::string::npos ? exp_end : frac_end;
      if (end != std::string::npos) {
        std::string text = strip(std::string_view(src_).substr(b, end - b));
        Token t;
        t.kind = TokenKind::kFloat;
        t.text = text;
        t.float_value = std::strtod(text.c_str(), nullptr);
        t.loc = Loc(b);
        tokens_.push_back(std::move(t));
        pos_ = end;
        *matched = true;
        return absl::OkStatus();
      }
    }
    int base = 10;
    size_t end;
    auto is_bin = [](char c) { return c == '0' || c == '1'; };
    auto is_oct = [](char c) { return c >= '0' && c <= '7'; };
    auto is_hex = [](char c) {
      return IsDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
    };
    auto prefixed = [&](bool (*is_digit)(char)) {
      size_t p = b + 2;
      if (At(p, "_")) ++p;
      return DigitRun(p, is_digit);
    };
    char p1 = b + 1 < src_.size() ? src_[b + 1] : 0;
    if (src_[b] == '0' && (p1 == 'b' || p1 == 'B') && prefixed(is_bin) != std::string::npos) {
      base = 2, end = prefixed(is_bin);
    } else if (src_[b] == '0' && (p1 == 'o' || p1 == 'O') &&
               prefixed(is_oct) != std::string::npos) {
      base = 8, end = prefixed(is_oct);
    } else if (src_[b] == '0' && (p1 == 'x' || p1 == 'X') &&
               prefixed(is_hex) != std::string::npos) {
      base = 16, end = prefixed(is_hex);
    } else if (src_[b] == '0') {
      end = DigitRun(b, [](char c) { return c == '0'; });
    } else {
      end = DigitRun(b, IsDigit);
    }
    std::string digits = strip(std::string_view(src_).substr(b, end - b));
    if (base != 10) digits = digits.substr(2);
    errno = 0;
    char* parse_end = nullptr;
    long long v = std::strtoll(digits.c_str(), &parse_end, base);
    if (errno == ERANGE) return Error(b, "integer literal too large");
    Token t;
    t.kind = TokenKind::kInteger;
    t.text = src_.substr(b, end - b);
    t.int_value = v;
    t.loc = Loc(b);
    tokens_.push_back(std::move(t));
    pos_ = end;
    *matched = true;
    return absl::OkStatus();
  }

  absl::Status LexString(bool* matched) {
    *matched = false;
    char quote = src_[pos_];
    size_t p = pos_ + 1;
    while (p < src_.size() && src_[p] != quote) {
      p += src_[p] == '\\' ? 2 : 1;
    }
    if (p >= src_.size()) return absl::OkStatus();  // unterminated: not a string token
    absl::StatusOr<std::string> value =
        UnescapeStringLiteral(std::string_view(src_).substr(pos_ + 1, p - pos_ - 1));
    if (!value.ok()) return Error(pos_, std::string(value.status().message()));
    Emit(TokenKind::kString, std::move(*value), pos_);
    pos_ = p + 1;
    *matched = true;
    return absl::OkStatus();
  }

  absl::Status LexOperator(std::vector<char>* balance) {
    static constexpr std::string_view kTwoChar[] = {"//", "**", "==", "!=", ">=", "<="};
    static constexpr std::string_view kOneChar = "+-/*%~[](){}><=.:|,;";
    std::string op;
    for (std::string_view two : kTwoChar) {
      if (At(pos_, two)) op = std::string(two);
    }
    if (op.empty() && kOneChar.find(src_[pos_]) != std::string_view::npos)
      op = src_.substr(pos_, 1);
    if (op.empty()) {
      std::u32string cp = DecodeUtf8(std::string_view(src_).substr(pos_, 4));
      return Error(pos_, StrCat("unexpected char ", PyStringRepr(EncodeUtf8(cp.substr(0, 1)))));
    }
    if (op == "{" || op == "(" || op == "[") {
      balance->push_back(op == "{" ? '}' : op == "(" ? ')' : ']');
    } else if (op == "}" || op == ")" || op == "]") {
      if (balance->empty()) return Error(pos_, StrCat("unexpected '", op, "'"));
      char expected = balance->back();
      balance->pop_back();
      if (expected != op[0]) {
        return Error(pos_,
                     StrCat("unexpected '", op, "', expected '", std::string(1, expected), "'"));
      }
    }
    Emit(TokenKind::kOperator, op, pos_);
    pos_ += op.size();
    return absl::OkStatus();
  }

  std::string src_;
  std::vector<size_t> line_starts_;
  std::vector<Token> tokens_;
  size_t pos_ = 0;
  bool line_starting_ = true;
  size_t cached_offset_ = 0;  // Loc() memo: the column at cached_offset_
  int cached_column_ = 1;
};

}  // namespace

absl::StatusOr<std::vector<Token>> Tokenize(std::string_view source) {
  return Lexer(NormalizeNewlines(source)).Run();
}

}  // namespace tokenfab::jinja
