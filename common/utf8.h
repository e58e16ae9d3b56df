// The UTF-8 encoding of one code point, shared by the tokenizer and the chat
// template interpreter (each adds its own policy for invalid input first).
#ifndef TOKENFAB_COMMON_UTF8_H_
#define TOKENFAB_COMMON_UTF8_H_

#include <cstdint>
#include <string>

namespace tokenfab {

// Appends the 1 to 4 bytes of `cp` (at most 0x1FFFFF; no validation).
inline void AppendCodePointUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

}  // namespace tokenfab

#endif  // TOKENFAB_COMMON_UTF8_H_
