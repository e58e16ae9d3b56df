#include "worker/chat/jinja_text.h"

#include "common/utf8.h"

#include <algorithm>
#include <cstdio>

namespace tokenfab::jinja {
namespace {

constexpr char32_t kSurrogateEscapeBase = 0xDC00;

// Latin Extended-A (U+0100..U+017F) alternates case by parity, with the
// parity flipping in three runs.
bool LatinExtAIsUpper(char32_t c) {
  if (c <= 0x12F || (c >= 0x132 && c <= 0x137) || (c >= 0x14A && c <= 0x177)) return c % 2 == 0;
  if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E)) return c % 2 == 1;
  return false;
}

bool LatinExtAHasPair(char32_t c) {
  return c <= 0x137 ? c != 0x130 && c != 0x131
                    : (c >= 0x139 && c <= 0x148) || (c >= 0x14A && c <= 0x177) ||
                          (c >= 0x179 && c <= 0x17E);
}

// Blocks where an upper-case letter at an even (or odd) code point is followed
// by its lower-case partner.
struct PairedRange {
  char32_t first, last;
  bool upper_is_even;
};
constexpr PairedRange kPairedRanges[] = {
    {0x1CD, 0x1DC, false}, {0x1DE, 0x1EF, true},   {0x1F4, 0x1F5, true},   {0x1F8, 0x21F, true},
    {0x222, 0x233, true},  {0x460, 0x481, true},   {0x48A, 0x4BF, true},   {0x4C1, 0x4CE, false},
    {0x4D0, 0x52F, true},  {0x1E00, 0x1E95, true}, {0x1EA0, 0x1EFF, true},
};

// Latin digraphs with three forms (upper, title, lower): DŽ Dž dž, LJ Lj lj, NJ Nj nj, DZ Dz dz.
// Returns the form (0 upper, 1 title, 2 lower) to map to, or 0 if `c` is not one.
char32_t DigraphForm(char32_t c, int form) {
  char32_t base = 0;
  if (c >= 0x1C4 && c <= 0x1CC) base = 0x1C4 + (c - 0x1C4) / 3 * 3;
  if (c >= 0x1F1 && c <= 0x1F3) base = 0x1F1;
  return base == 0 ? 0 : base + form;
}

const PairedRange* FindPairedRange(char32_t c) {
  for (const PairedRange& r : kPairedRanges) {
    if (c >= r.first && c <= r.last) return &r;
  }
  return nullptr;
}

char32_t SimpleUpper(char32_t c) {
  if (c < 0x80) return (c >= 'a' && c <= 'z') ? c - 32 : c;
  if (char32_t d = DigraphForm(c, 0)) return d;
  if (c == 0xB5) return 0x39C;
  if (c >= 0xE0 && c <= 0xFE && c != 0xF7) return c - 32;
  if (c == 0xFF) return 0x178;
  if (c >= 0x100 && c <= 0x17F) {
    if (c == 0x131) return 'I';
    if (c == 0x17F) return 'S';
    if (LatinExtAHasPair(c) && !LatinExtAIsUpper(c)) return c - 1;
    return c;
  }
  if (c >= 0x3B1 && c <= 0x3C9) return c == 0x3C2 ? 0x3A3 : c - 32;
  if (c == 0x3AC) return 0x386;
  if (c >= 0x3AD && c <= 0x3AF) return c - 37;
  if (c == 0x3CC) return 0x38C;
  if (c == 0x3CD || c == 0x3CE) return c - 63;
  if (c >= 0x430 && c <= 0x44F) return c - 32;
  if (c >= 0x450 && c <= 0x45F) return c - 80;
  if (c == 0x4CF) return 0x4C0;
  if (c >= 0x561 && c <= 0x586) return c - 48;
  if (c >= 0xFF41 && c <= 0xFF5A) return c - 32;
  if (const PairedRange* r = FindPairedRange(c)) {
    bool is_upper = (c % 2 == 0) == r->upper_is_even;
    return is_upper ? c : c - 1;
  }
  return c;
}

char32_t SimpleLower(char32_t c) {
  if (c < 0x80) return (c >= 'A' && c <= 'Z') ? c + 32 : c;
  if (char32_t d = DigraphForm(c, 2)) return d;
  if (c >= 0xC0 && c <= 0xDE && c != 0xD7) return c + 32;
  if (c >= 0x100 && c <= 0x17F) {
    if (c == 0x130) return 'i';
    if (c == 0x178) return 0xFF;
    if (LatinExtAHasPair(c) && LatinExtAIsUpper(c)) return c + 1;
    return c;
  }
  if (c >= 0x391 && c <= 0x3A9) return c == 0x3A2 ? c : c + 32;
  if (c == 0x386) return 0x3AC;
  if (c >= 0x388 && c <= 0x38A) return c + 37;
  if (c == 0x38C) return 0x3CC;
  if (c == 0x38E || c == 0x38F) return c + 63;
  if (c >= 0x410 && c <= 0x42F) return c + 32;
  if (c >= 0x400 && c <= 0x40F) return c + 80;
  if (c == 0x4C0) return 0x4CF;
  if (c >= 0x531 && c <= 0x556) return c + 48;
  if (c >= 0xFF21 && c <= 0xFF3A) return c + 32;
  if (const PairedRange* r = FindPairedRange(c)) {
    bool is_upper = (c % 2 == 0) == r->upper_is_even;
    return is_upper ? c + 1 : c;
  }
  return c;
}

// Full mappings that expand to more than one code point.
void AppendUpper(char32_t c, std::u32string* out) {
  if (c == 0xDF) {
    out->append(U"SS");
  } else {
    out->push_back(SimpleUpper(c));
  }
}
void AppendLower(char32_t c, std::u32string* out) {
  if (c == 0x130) {
    out->append(U"i\u0307");
  } else {
    out->push_back(SimpleLower(c));
  }
}
void AppendTitle(char32_t c, std::u32string* out) {
  if (c == 0xDF) {
    out->append(U"Ss");
  } else if (char32_t d = DigraphForm(c, 1)) {
    out->push_back(d);
  } else {
    out->push_back(SimpleUpper(c));
  }
}

bool IsLineBreak(char32_t c) {
  return c == '\n' || c == '\r' || c == 0x0B || c == 0x0C || c == 0x1C || c == 0x1D || c == 0x1E ||
         c == 0x85 || c == 0x2028 || c == 0x2029;
}

void AppendHexEscape(char prefix, int digits, char32_t c, std::string* out) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "\\%c%0*x", prefix, digits, static_cast<unsigned>(c));
  out->append(buf);
}

}  // namespace

std::u32string DecodeUtf8(std::string_view s) {
  std::u32string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    unsigned char b = static_cast<unsigned char>(s[i]);
    if (b < 0x80) {
      out.push_back(b);
      ++i;
      continue;
    }
    int len = 0;
    char32_t cp = 0;
    char32_t min = 0;
    if ((b & 0xE0) == 0xC0) {
      len = 2, cp = b & 0x1F, min = 0x80;
    } else if ((b & 0xF0) == 0xE0) {
      len = 3, cp = b & 0x0F, min = 0x800;
    } else if ((b & 0xF8) == 0xF0) {
      len = 4, cp = b & 0x07, min = 0x10000;
    }
    bool ok = len > 0 && i + len <= s.size();
    for (int k = 1; ok && k < len; ++k) {
      unsigned char cb = static_cast<unsigned char>(s[i + k]);
      if ((cb & 0xC0) != 0x80) {
        ok = false;
      } else {
        cp = (cp << 6) | (cb & 0x3F);
      }
    }
    ok = ok && cp >= min && cp <= 0x10FFFF && !(cp >= 0xD800 && cp <= 0xDFFF);
    if (ok) {
      out.push_back(cp);
      i += len;
    } else {
      out.push_back(kSurrogateEscapeBase + b);
      ++i;
    }
  }
  return out;
}

void AppendUtf8(char32_t c, std::string* out) {
  if (c >= 0xDC80 && c <= 0xDCFF) {  // surrogateescape'd byte
    out->push_back(static_cast<char>(c - kSurrogateEscapeBase));
  } else {
    AppendCodePointUtf8(static_cast<uint32_t>(c), out);
  }
}

std::string EncodeUtf8(std::u32string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char32_t c : s) AppendUtf8(c, &out);
  return out;
}

int64_t CodePointCount(std::string_view s) {
  bool ascii = std::all_of(s.begin(), s.end(), [](char c) { return (c & 0x80) == 0; });
  if (ascii) return static_cast<int64_t>(s.size());
  return static_cast<int64_t>(DecodeUtf8(s).size());
}

bool IsPySpace(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

bool IsPyPrintable(char32_t c) {
  if (c < 0x20 || (c >= 0x7F && c <= 0xA0) || c == 0xAD) return false;
  if (c == ' ') return true;
  if (IsPySpace(c)) return false;
  if ((c >= 0x600 && c <= 0x605) || c == 0x61C || c == 0x6DD || c == 0x70F || c == 0x180E)
    return false;
  if ((c >= 0x200B && c <= 0x200F) || (c >= 0x202A && c <= 0x202E) || (c >= 0x2060 && c <= 0x206F))
    return false;
  if ((c >= 0xD800 && c <= 0xF8FF) || c == 0xFEFF || (c >= 0xFFF9 && c <= 0xFFFB) || c == 0xFFFE ||
      c == 0xFFFF)
    return false;
  if ((c >= 0xE0000 && c <= 0xE007F) || c >= 0xF0000) return false;
  return true;
}

bool IsPyDigit(char32_t c) {
  return (c >= '0' && c <= '9') || c == 0xB2 || c == 0xB3 || c == 0xB9 ||
         (c >= 0x660 && c <= 0x669) || (c >= 0x966 && c <= 0x96F) || (c >= 0xFF10 && c <= 0xFF19);
}

bool IsPyAlpha(char32_t c) {
  if (c < 0x80) return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
  if (IsPyCased(c) || c == 0xAA || c == 0xBA) return true;
  if (c < 0x100) return false;  // the rest of Latin-1 is punctuation and symbols
  if (IsPyDigit(c) || !IsPyPrintable(c) || IsPySpace(c)) return false;
  struct Range {
    char32_t first, last;
  };
  static constexpr Range kNonLetters[] = {
      {0x2000, 0x2BFF},   {0x2E00, 0x2E7F}, {0x3000, 0x303F}, {0xFE10, 0xFE1F},
      {0xFE30, 0xFE6F},   {0xFF00, 0xFF20}, {0xFF3B, 0xFF40}, {0xFF5B, 0xFF65},
      {0x1F000, 0x1FAFF}, {0x0600, 0x060F}, {0x0964, 0x0965}, {0x3200, 0x33FF},
  };
  for (const Range& r : kNonLetters) {
    if (c >= r.first && c <= r.last) return false;
  }
  return true;
}

bool IsPyUpper(char32_t c) { return SimpleLower(c) != c; }
bool IsPyLower(char32_t c) { return SimpleUpper(c) != c || c == 0xDF || c == 0x138 || c == 0x149; }
bool IsPyCased(char32_t c) { return IsPyUpper(c) || IsPyLower(c); }

std::string PyUpper(std::string_view s) {
  std::u32string out;
  for (char32_t c : DecodeUtf8(s)) AppendUpper(c, &out);
  return EncodeUtf8(out);
}

// Python lowercases a capital sigma that ends a word to the final form ς.
bool IsFinalSigma(const std::u32string& in, size_t i) {
  size_t j = i;
  while (j > 0 && !IsPyCased(in[j - 1]) && in[j - 1] == 0x27) --j;  // skip apostrophes
  if (j == 0 || !IsPyCased(in[j - 1])) return false;
  size_t k = i + 1;
  while (k < in.size() && in[k] == 0x27) ++k;
  return k >= in.size() || !IsPyCased(in[k]);
}

std::string PyLower(std::string_view s) {
  std::u32string in = DecodeUtf8(s);
  std::u32string out;
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == 0x3A3 && IsFinalSigma(in, i)) {
      out.push_back(0x3C2);
    } else {
      AppendLower(in[i], &out);
    }
  }
  return EncodeUtf8(out);
}

std::string PySwapcase(std::string_view s) {
  std::u32string out;
  for (char32_t c : DecodeUtf8(s)) {
    if (IsPyUpper(c)) {
      AppendLower(c, &out);
    } else if (IsPyLower(c)) {
      AppendUpper(c, &out);
    } else {
      out.push_back(c);
    }
  }
  return EncodeUtf8(out);
}

std::string PyTitle(std::string_view s) {
  std::u32string out;
  bool previous_cased = false;
  for (char32_t c : DecodeUtf8(s)) {
    if (previous_cased) {
      AppendLower(c, &out);
    } else {
      AppendTitle(c, &out);
    }
    previous_cased = IsPyCased(c);
  }
  return EncodeUtf8(out);
}

std::string PyCapitalize(std::string_view s) {
  std::u32string in = DecodeUtf8(s);
  std::u32string out;
  for (size_t i = 0; i < in.size(); ++i) {
    if (i == 0) {
      AppendTitle(in[i], &out);
    } else {
      AppendLower(in[i], &out);
    }
  }
  return EncodeUtf8(out);
}

// Strips by decoding only the code points at the two ends: message contents
// can be long, and trim runs on every one of them.
std::string PyStrip(std::string_view s, const std::optional<std::string>& chars, bool left,
                    bool right) {
  std::u32string set = chars ? DecodeUtf8(*chars) : std::u32string();
  auto strip = [&](char32_t c) {
    return chars ? set.find(c) != std::u32string::npos : IsPySpace(c);
  };
  // The code point whose encoding starts at byte i (at most 4 bytes long).
  auto decode_at = [&](size_t i, size_t* len) {
    size_t n = 1;
    while (n < 4 && i + n < s.size() && (static_cast<unsigned char>(s[i + n]) & 0xC0) == 0x80) ++n;
    std::u32string cp = DecodeUtf8(s.substr(i, n));
    *len = EncodeUtf8(cp.substr(0, 1)).size();
    return cp[0];
  };
  size_t begin = 0;
  size_t end = s.size();
  if (left) {
    while (begin < end) {
      size_t len;
      if (!strip(decode_at(begin, &len))) break;
      begin += len;
    }
  }
  if (right) {
    while (end > begin) {
      size_t start = end - 1;
      while (start > begin && end - start < 4 &&
             (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) {
        --start;
      }
      size_t len;
      char32_t c = decode_at(start, &len);
      if (start + len != end) {  // not a whole code point: an invalid byte
        start = end - 1;
        c = decode_at(start, &len);
      }
      if (!strip(c)) break;
      end = start;
    }
  }
  return std::string(s.substr(begin, end - begin));
}

std::vector<std::string> PySplitWhitespace(std::string_view s, int64_t maxsplit) {
  std::u32string in = DecodeUtf8(s);
  std::vector<std::string> out;
  size_t n = in.size();
  size_t i = 0;
  int64_t remaining = maxsplit < 0 ? INT64_MAX : maxsplit;
  while (remaining-- > 0) {
    while (i < n && IsPySpace(in[i])) ++i;
    if (i == n) break;
    size_t j = i++;
    while (i < n && !IsPySpace(in[i])) ++i;
    out.push_back(EncodeUtf8(std::u32string_view(in).substr(j, i - j)));
  }
  if (i < n) {
    while (i < n && IsPySpace(in[i])) ++i;
    if (i != n) out.push_back(EncodeUtf8(std::u32string_view(in).substr(i)));
  }
  return out;
}

std::vector<std::string> PyRSplitWhitespace(std::string_view s, int64_t maxsplit) {
  std::u32string in = DecodeUtf8(s);
  std::vector<std::string> out;
  int64_t i = static_cast<int64_t>(in.size()) - 1;
  int64_t remaining = maxsplit < 0 ? INT64_MAX : maxsplit;
  while (remaining-- > 0) {
    while (i >= 0 && IsPySpace(in[i])) --i;
    if (i < 0) break;
    int64_t j = i--;
    while (i >= 0 && !IsPySpace(in[i])) --i;
    out.push_back(EncodeUtf8(std::u32string_view(in).substr(i + 1, j - i)));
  }
  if (i >= 0) {
    while (i >= 0 && IsPySpace(in[i])) --i;
    if (i >= 0) out.push_back(EncodeUtf8(std::u32string_view(in).substr(0, i + 1)));
  }
  std::reverse(out.begin(), out.end());
  return out;
}

std::vector<std::string> PySplit(std::string_view s, std::string_view sep, int64_t maxsplit) {
  std::vector<std::string> out;
  int64_t remaining = maxsplit < 0 ? INT64_MAX : maxsplit;
  size_t pos = 0;
  while (remaining-- > 0) {
    size_t found = s.find(sep, pos);
    if (found == std::string_view::npos) break;
    out.emplace_back(s.substr(pos, found - pos));
    pos = found + sep.size();
  }
  out.emplace_back(s.substr(pos));
  return out;
}

std::vector<std::string> PyRSplit(std::string_view s, std::string_view sep, int64_t maxsplit) {
  std::vector<std::string> out;
  int64_t remaining = maxsplit < 0 ? INT64_MAX : maxsplit;
  size_t end = s.size();
  while (remaining-- > 0 && end >= sep.size()) {
    size_t found = s.rfind(sep, end - sep.size());
    if (found == std::string_view::npos) break;
    out.emplace_back(s.substr(found + sep.size(), end - found - sep.size()));
    end = found;
  }
  out.emplace_back(s.substr(0, end));
  std::reverse(out.begin(), out.end());
  return out;
}

std::vector<std::string> PySplitLines(std::string_view s, bool keepends) {
  std::u32string in = DecodeUtf8(s);
  std::vector<std::string> out;
  size_t i = 0;
  size_t n = in.size();
  while (i < n) {
    size_t j = i;
    while (j < n && !IsLineBreak(in[j])) ++j;
    size_t eol = j;
    if (j < n) {
      j += (in[j] == '\r' && j + 1 < n && in[j + 1] == '\n') ? 2 : 1;
      if (keepends) eol = j;
    }
    out.push_back(EncodeUtf8(std::u32string_view(in).substr(i, eol - i)));
    i = j;
  }
  return out;
}

std::string PyReplace(std::string_view s, std::string_view old_sub, std::string_view new_sub,
                      int64_t count) {
  int64_t remaining = count < 0 ? INT64_MAX : count;
  std::string out;
  if (old_sub.empty()) {
    std::u32string in = DecodeUtf8(s);
    for (size_t i = 0; i <= in.size(); ++i) {
      if (remaining > 0) {
        out.append(new_sub);
        --remaining;
      }
      if (i < in.size()) AppendUtf8(in[i], &out);
    }
    return out;
  }
  size_t pos = 0;
  while (remaining > 0) {
    size_t found = s.find(old_sub, pos);
    if (found == std::string_view::npos) break;
    out.append(s.substr(pos, found - pos));
    out.append(new_sub);
    pos = found + old_sub.size();
    --remaining;
  }
  out.append(s.substr(pos));
  return out;
}

int64_t PyCount(std::string_view s, std::string_view sub) {
  if (sub.empty()) return CodePointCount(s) + 1;
  int64_t n = 0;
  for (size_t pos = s.find(sub); pos != std::string_view::npos; pos = s.find(sub, pos + sub.size()))
    ++n;
  return n;
}

std::string PyPad(std::string_view s, int64_t width, std::string_view fill, std::string_view how) {
  int64_t len = CodePointCount(s);
  if (width <= len) return std::string(s);
  int64_t margin = width - len;
  int64_t left = how == "ljust" ? 0 : how == "rjust" ? margin : margin / 2 + (margin & width & 1);
  std::string out;
  for (int64_t i = 0; i < left; ++i) out.append(fill);
  out.append(s);
  for (int64_t i = left; i < margin; ++i) out.append(fill);
  return out;
}

std::string PyStringRepr(std::string_view s) {
  bool has_single = s.find('\'') != std::string_view::npos;
  bool has_double = s.find('"') != std::string_view::npos;
  char quote = (has_single && !has_double) ? '"' : '\'';
  std::string out(1, quote);
  for (char32_t c : DecodeUtf8(s)) {
    if (c == static_cast<char32_t>(quote) || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else if (c == '\t') {
      out.append("\\t");
    } else if (c == '\n') {
      out.append("\\n");
    } else if (c == '\r') {
      out.append("\\r");
    } else if (c < 0x20 || c == 0x7F) {
      AppendHexEscape('x', 2, c, &out);
    } else if (c < 0x7F || IsPyPrintable(c)) {
      AppendUtf8(c, &out);
    } else if (c <= 0xFF) {
      AppendHexEscape('x', 2, c, &out);
    } else if (c <= 0xFFFF) {
      AppendHexEscape('u', 4, c, &out);
    } else {
      AppendHexEscape('U', 8, c, &out);
    }
  }
  out.push_back(quote);
  return out;
}

std::vector<int64_t> SliceIndices(int64_t length, std::optional<int64_t> start,
                                  std::optional<int64_t> stop, int64_t step) {
  auto adjust = [&](std::optional<int64_t> v, bool is_start) -> int64_t {
    if (!v) {
      if (step < 0) return is_start ? length - 1 : -1;
      return is_start ? 0 : length;
    }
    int64_t x = *v;
    if (x < 0) {
      x += length;
      if (x < 0) x = step < 0 ? -1 : 0;
    } else if (x >= length) {
      x = step < 0 ? length - 1 : length;
    }
    return x;
  };
  int64_t b = adjust(start, true);
  int64_t e = adjust(stop, false);
  std::vector<int64_t> out;
  for (int64_t i = b; step > 0 ? i < e : i > e; i += step) out.push_back(i);
  return out;
}

std::u32string SliceCodePoints(const std::u32string& s, std::optional<int64_t> start,
                               std::optional<int64_t> stop, int64_t step) {
  std::u32string out;
  for (int64_t i : SliceIndices(static_cast<int64_t>(s.size()), start, stop, step))
    out.push_back(s[i]);
  return out;
}

}  // namespace tokenfab::jinja
