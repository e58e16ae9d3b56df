#include "worker/tokenizer/special_token_splitter.h"

#include <algorithm>
#include <list>

#include "worker/tokenizer/utf8.h"

namespace tokenfab {
namespace {

bool IsAsciiSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

// Rust's char::is_whitespace (Unicode White_Space), which `tokenizers` uses
// for lstrip/rstrip.
bool IsUnicodeWhitespace(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
         cp == 0x205F || cp == 0x3000;
}

// Start of the run of Unicode whitespace that ends at `end` (not before `limit`).
size_t UnicodeWhitespaceStart(std::string_view text, size_t end, size_t limit) {
  size_t pos = end;
  while (pos > limit) {
    size_t lead = pos - 1;
    while (lead > limit && (static_cast<uint8_t>(text[lead]) & 0xC0) == 0x80 && pos - lead < 4) {
      --lead;
    }
    uint32_t cp;
    if (DecodeUtf8(text, lead, &cp) != pos - lead || !IsUnicodeWhitespace(cp)) break;
    pos = lead;
  }
  return pos;
}

// End of the run of Unicode whitespace that starts at `begin`.
size_t UnicodeWhitespaceEnd(std::string_view text, size_t begin) {
  size_t pos = begin;
  uint32_t cp;
  while (pos < text.size()) {
    const size_t n = DecodeUtf8(text, pos, &cp);
    if (n == 0 || !IsUnicodeWhitespace(cp)) break;
    pos += n;
  }
  return pos;
}

// Word characters for single_word tokens: ASCII alphanumerics, '_' and any
// non-ASCII byte (letters of other scripts count as word characters).
bool IsWordByte(char c) {
  const auto b = static_cast<unsigned char>(c);
  return b >= 0x80 || (b >= '0' && b <= '9') || (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') ||
         b == '_';
}

}  // namespace

SpecialTokenSplitter::SpecialTokenSplitter(std::vector<SpecialTokenRule> rules, Order order)
    : rules_(std::move(rules)), order_(order) {
  rules_.erase(std::remove_if(rules_.begin(), rules_.end(),
                              [](const SpecialTokenRule& r) { return r.text.empty(); }),
               rules_.end());
  std::stable_sort(rules_.begin(), rules_.end(),
                   [](const SpecialTokenRule& a, const SpecialTokenRule& b) {
                     if (a.text.size() != b.text.size()) return a.text.size() > b.text.size();
                     return a.id < b.id;
                   });
  by_first_byte_.resize(256);
  for (uint32_t i = 0; i < rules_.size(); ++i) {
    by_first_byte_[static_cast<unsigned char>(rules_[i].text[0])].push_back(i);
  }
}

std::vector<TextFragment> SpecialTokenSplitter::Split(std::string_view text,
                                                      bool parse_special) const {
  if (text.empty()) return {};
  return order_ == Order::kLongestTokenFirst ? SplitLongestTokenFirst(text, parse_special)
                                             : SplitLeftmostLongest(text, parse_special);
}

std::vector<TextFragment> SpecialTokenSplitter::SplitLongestTokenFirst(std::string_view text,
                                                                       bool parse_special) const {
  std::list<TextFragment> fragments = {TextFragment{-1, text, 0}};
  for (const SpecialTokenRule& rule : rules_) {
    if (!parse_special && rule.special) continue;
    // Most tokens never occur; one scan of the whole input rules them out.
    if (text.find(rule.text) == std::string_view::npos) continue;
    for (auto it = fragments.begin(); it != fragments.end(); ++it) {
      if (it->token >= 0) continue;
      std::string_view rest = it->text;
      size_t rest_offset = it->offset;
      const auto insert_at = std::next(it);
      bool found_any = false;
      while (true) {
        const size_t match = rest.find(rule.text);
        if (match == std::string_view::npos) break;
        found_any = true;
        size_t left_len = match;
        if (rule.lstrip) {
          while (left_len > 0 && IsAsciiSpace(rest[left_len - 1])) --left_len;
        }
        if (left_len > 0) {
          fragments.insert(insert_at, TextFragment{-1, rest.substr(0, left_len), rest_offset});
        }
        fragments.insert(insert_at, TextFragment{rule.id, rule.text, rest_offset + match});
        size_t right = match + rule.text.size();
        if (rule.rstrip) {
          while (right < rest.size() && IsAsciiSpace(rest[right])) ++right;
        }
        rest_offset += right;
        rest = rest.substr(right);
      }
      if (!found_any) continue;
      if (!rest.empty()) fragments.insert(insert_at, TextFragment{-1, rest, rest_offset});
      // Replace the original fragment by the pieces inserted after it and
      // continue after the last of them: they hold no further match.
      fragments.erase(it);
      it = std::prev(insert_at);
    }
  }
  return {fragments.begin(), fragments.end()};
}

std::vector<TextFragment> SpecialTokenSplitter::SplitLeftmostLongest(std::string_view text,
                                                                     bool parse_special) const {
  std::vector<TextFragment> out;
  size_t text_start = 0;  // start of the pending text fragment
  size_t pos = 0;
  while (pos < text.size()) {
    const SpecialTokenRule* hit = nullptr;
    for (uint32_t idx : by_first_byte_[static_cast<unsigned char>(text[pos])]) {
      const SpecialTokenRule& rule = rules_[idx];
      if (!parse_special && rule.special) continue;
      if (text.compare(pos, rule.text.size(), rule.text) != 0) continue;
      if (rule.single_word) {
        const size_t end = pos + rule.text.size();
        if ((pos > 0 && IsWordByte(text[pos - 1])) ||
            (end < text.size() && IsWordByte(text[end]))) {
          continue;
        }
      }
      hit = &rule;
      break;
    }
    if (hit == nullptr) {
      ++pos;
      continue;
    }
    size_t begin = pos;
    size_t end = pos + hit->text.size();
    if (hit->lstrip) begin = UnicodeWhitespaceStart(text, begin, text_start);
    if (hit->rstrip) end = UnicodeWhitespaceEnd(text, end);
    if (begin > text_start) {
      out.push_back({-1, text.substr(text_start, begin - text_start), text_start});
    }
    out.push_back({hit->id, text.substr(pos, hit->text.size()), pos});
    pos = end;
    text_start = end;
  }
  if (text_start < text.size()) out.push_back({-1, text.substr(text_start), text_start});
  return out;
}

}  // namespace tokenfab
