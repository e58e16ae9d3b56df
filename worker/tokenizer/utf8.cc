#include "worker/tokenizer/utf8.h"

#include "common/utf8.h"

namespace tokenfab {
namespace {

bool IsContinuation(uint8_t b) { return (b & 0xC0) == 0x80; }

// Valid range of the second byte of a sequence given its lead byte (Unicode
// Table 3-7); the other continuation bytes are always 80..BF.
void SecondByteRange(uint8_t lead, uint8_t* lo, uint8_t* hi) {
  *lo = 0x80;
  *hi = 0xBF;
  if (lead == 0xE0) *lo = 0xA0;
  if (lead == 0xED) *hi = 0x9F;
  if (lead == 0xF0) *lo = 0x90;
  if (lead == 0xF4) *hi = 0x8F;
}

// Length a lead byte needs for a well-formed sequence, 0 if it can never lead.
size_t WellFormedLength(uint8_t lead) {
  if (lead < 0x80) return 1;
  if (lead >= 0xC2 && lead <= 0xDF) return 2;
  if (lead >= 0xE0 && lead <= 0xEF) return 3;
  if (lead >= 0xF0 && lead <= 0xF4) return 4;
  return 0;
}

}  // namespace

size_t Utf8LeadLength(uint8_t lead) {
  static constexpr size_t kLookup[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
  return kLookup[lead >> 4];
}

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) cp = kReplacementChar;
  AppendCodePointUtf8(cp, out);
}

size_t DecodeUtf8(std::string_view s, size_t pos, uint32_t* cp) {
  if (pos >= s.size()) return 0;
  const auto* p = reinterpret_cast<const uint8_t*>(s.data()) + pos;
  const size_t avail = s.size() - pos;
  const size_t len = WellFormedLength(p[0]);
  if (len == 0 || len > avail) return 0;
  if (len == 1) {
    *cp = p[0];
    return 1;
  }
  uint8_t lo, hi;
  SecondByteRange(p[0], &lo, &hi);
  if (p[1] < lo || p[1] > hi) return 0;
  for (size_t i = 2; i < len; ++i) {
    if (!IsContinuation(p[i])) return 0;
  }
  uint32_t v = p[0] & (0x7F >> len);
  for (size_t i = 1; i < len; ++i) v = (v << 6) | (p[i] & 0x3F);
  *cp = v;
  return len;
}

std::string SanitizeUtf8LlamaStyle(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  size_t i = 0;
  while (i < s.size()) {
    const uint8_t b = p[i];
    if (b < 0x80) {
      out.push_back(static_cast<char>(b));
      ++i;
      continue;
    }
    // llama.cpp's decoder: the lead byte's high bits decide the length, the
    // continuation bytes are only checked for their 10xxxxxx tag.
    size_t len = 0;
    if ((b & 0xE0) == 0xC0) {
      len = 2;
    } else if ((b & 0xF0) == 0xE0) {
      len = 3;
    } else if ((b & 0xF8) == 0xF0) {
      len = 4;
    }
    bool ok = len != 0 && i + len <= s.size();
    for (size_t k = 1; ok && k < len; ++k) ok = IsContinuation(p[i + k]);
    if (!ok) {
      AppendUtf8(kReplacementChar, &out);
      ++i;
      continue;
    }
    // llama.cpp decodes without range checks and re-encodes the code point:
    // overlong forms come out in their shortest form and surrogates as
    // their 3-byte encoding. Above U+10FFFF it would throw; U+FFFD here.
    uint32_t cp = p[i] & (0x7F >> len);
    for (size_t k = 1; k < len; ++k) cp = (cp << 6) | (p[i + k] & 0x3F);
    if (cp >= 0xD800 && cp <= 0xDFFF) {
      out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      AppendUtf8(cp, &out);
    }
    i += len;
  }
  return out;
}

bool IsValidUtf8(std::string_view s) {
  size_t i = 0;
  uint32_t cp;
  while (i < s.size()) {
    const size_t n = DecodeUtf8(s, i, &cp);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

size_t AppendUtf8Lossy(std::string_view bytes, bool final, std::string* out) {
  const auto* p = reinterpret_cast<const uint8_t*>(bytes.data());
  size_t i = 0;
  while (i < bytes.size()) {
    uint32_t cp;
    const size_t n = DecodeUtf8(bytes, i, &cp);
    if (n > 0) {
      out->append(bytes.substr(i, n));
      i += n;
      continue;
    }
    // Length of the maximal subpart: the longest prefix of a well-formed
    // sequence starting here (at least one byte).
    const size_t want = WellFormedLength(p[i]);
    size_t have = 1;
    if (want > 1) {
      uint8_t lo, hi;
      SecondByteRange(p[i], &lo, &hi);
      if (i + 1 < bytes.size() && p[i + 1] >= lo && p[i + 1] <= hi) {
        have = 2;
        while (have < want && i + have < bytes.size() && IsContinuation(p[i + have])) ++have;
      }
    }
    if (!final && want > 1 && have < want && i + have == bytes.size()) {
      return i;  // a sequence that may still be completed by later bytes
    }
    AppendUtf8(kReplacementChar, out);
    i += have;
  }
  return i;
}

}  // namespace tokenfab
