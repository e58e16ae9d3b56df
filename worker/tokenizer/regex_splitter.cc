#include "worker/tokenizer/regex_splitter.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "absl/status/status.h"
#include "common/strings.h"

namespace tokenfab {
namespace {

pcre2_code* Code(void* p) { return static_cast<pcre2_code*>(p); }

// PCRE2 must see valid UTF-8 classified as the references classify it, so
// matching runs on a view where a few sequences are swapped for stand-ins of
// the same length and class; offsets carry over unchanged.
//  - U+180E: \s to PCRE2, a format character to llama.cpp and Oniguruma;
//    stand-in U+200B, a format character to all.
//  - surrogates (ED A0..BF xx), which llama.cpp passes through from
//    ill-formed input as control characters; stand-in U+E000.
//  - code points PCRE2 10.42 (Unicode 14) leaves unassigned but llama.cpp's
//    tables and Oniguruma (Unicode 15.1) call letters or numbers; stand-ins
//    U+10400 (a letter) and U+1D7CE (a digit). Found by comparing every code
//    point's \s, \p{L}, \p{N} class in llama.cpp's unicode-data.cpp, PCRE2
//    and `tokenizers`; these were the only differences.
struct NewerRange {
  uint32_t first, last;
  bool number;  // else letter
};
constexpr NewerRange kNewerThanPcre2[] = {
    {0x1123F, 0x11240, false}, {0x11F02, 0x11F02, false}, {0x11F04, 0x11F10, false},
    {0x11F12, 0x11F33, false}, {0x11F50, 0x11F59, true},  {0x1342F, 0x1342F, false},
    {0x13441, 0x13446, false}, {0x1B132, 0x1B132, false}, {0x1B155, 0x1B155, false},
    {0x1D2C0, 0x1D2D3, true},  {0x1DF25, 0x1DF2A, false}, {0x1E030, 0x1E06D, false},
    {0x1E4D0, 0x1E4EB, false}, {0x1E4F0, 0x1E4F9, true},  {0x2B739, 0x2B739, false},
    {0x2EBF0, 0x2EE5D, false}, {0x31350, 0x323AF, false},
};

// The stand-in for the sequence at `p`, or empty if it needs none.
std::string_view StandIn(std::string_view text, size_t p) {
  const auto b = [&](size_t i) { return static_cast<uint8_t>(text[p + i]); };
  if (p + 2 >= text.size()) return {};
  if (b(0) == 0xE1 && b(1) == 0xA0 && b(2) == 0x8E) return "\xE2\x80\x8B";
  if (b(0) == 0xED && b(1) >= 0xA0 && b(1) <= 0xBF && (b(2) & 0xC0) == 0x80) return "\xEE\x80\x80";
  if (b(0) == 0xF0 && p + 3 < text.size()) {
    const uint32_t cp = ((b(1) & 0x3Fu) << 12) | ((b(2) & 0x3Fu) << 6) | (b(3) & 0x3Fu);
    for (const NewerRange& r : kNewerThanPcre2) {
      if (cp >= r.first && cp <= r.last) return r.number ? "\xF0\x9D\x9F\x8E" : "\xF0\x90\x90\x80";
    }
  }
  return {};
}

bool NeedsStandIns(std::string_view text) {
  for (size_t p = 0; p < text.size(); ++p) {
    const auto c = static_cast<uint8_t>(text[p]);
    if ((c == 0xE1 || c == 0xED || c == 0xF0) && !StandIn(text, p).empty()) return true;
  }
  return false;
}

std::string WithStandIns(std::string_view text) {
  std::string view(text);
  for (size_t p = 0; p < view.size(); ++p) {
    const std::string_view s = StandIn(text, p);
    if (s.empty()) continue;
    view.replace(p, s.size(), s);
    p += s.size() - 1;
  }
  return view;
}

}  // namespace

absl::StatusOr<SplitBehavior> ParseSplitBehavior(std::string_view name) {
  if (name == "Isolated") return SplitBehavior::kIsolated;
  if (name == "Removed") return SplitBehavior::kRemoved;
  if (name == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (name == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (name == "Contiguous") return SplitBehavior::kContiguous;
  return absl::InvalidArgumentError(StrCat("unknown split behavior '", name, "'"));
}

absl::StatusOr<std::unique_ptr<RegexSplitter>> RegexSplitter::Create(std::string_view pattern,
                                                                     bool literal) {
  std::unique_ptr<RegexSplitter> splitter(new RegexSplitter());
  splitter->pattern_ = std::string(pattern);
  int error_code = 0;
  PCRE2_SIZE error_offset = 0;
  // PCRE2_LITERAL admits no other option but UTF.
  const uint32_t options = literal ? (PCRE2_UTF | PCRE2_LITERAL) : (PCRE2_UTF | PCRE2_UCP);
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   options, &error_code, &error_offset, nullptr);
  if (code == nullptr) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error_code, message, sizeof(message));
    return absl::InvalidArgumentError(StrCat("cannot compile regex '", pattern, "' at offset ",
                                             error_offset, ": ",
                                             reinterpret_cast<const char*>(message)));
  }
  // JIT is an optimisation only; the interpreter gives the same matches.
  (void)pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
  splitter->code_ = code;
  return splitter;
}

RegexSplitter::~RegexSplitter() {
  if (code_ != nullptr) pcre2_code_free(Code(code_));
}

std::vector<std::pair<size_t, size_t>> RegexSplitter::FindAll(std::string_view text) const {
  std::vector<std::pair<size_t, size_t>> matches;
  std::string substituted;
  if (NeedsStandIns(text)) {
    substituted = WithStandIns(text);
    text = substituted;
  }
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(Code(code_), nullptr);
  if (md == nullptr) return matches;
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t pos = 0;
  while (pos <= text.size()) {
    // The text was validated once by the caller; skip PCRE2's re-check.
    int rc = pcre2_match(Code(code_), subject, text.size(), pos, PCRE2_NO_UTF_CHECK, md, nullptr);
    if (rc < 0 && rc != PCRE2_ERROR_NOMATCH) {
      // JIT stack exhausted or a similar resource limit: the interpreter
      // keeps its backtracking on the heap and gives the same match.
      rc = pcre2_match(Code(code_), subject, text.size(), pos, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT,
                       md, nullptr);
    }
    if (rc < 0) break;
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    const size_t begin = ov[0], end = ov[1];
    if (end > begin) {
      matches.emplace_back(begin, end);
      pos = end;
    } else {
      // Empty match: step over one whole character.
      pos = begin + 1;
      while (pos < text.size() && (static_cast<uint8_t>(text[pos]) & 0xC0) == 0x80) ++pos;
    }
  }
  pcre2_match_data_free(md);
  return matches;
}

void RegexSplitter::Split(std::string_view text, SplitBehavior behavior, bool invert,
                          std::vector<std::string_view>* out) const {
  if (text.empty()) return;
  // Spans covering the text, each flagged as match or gap.
  struct Span {
    size_t begin, end;
    bool match;
  };
  std::vector<Span> spans;
  size_t last = 0;
  for (const auto& [b, e] : FindAll(text)) {
    if (b > last) spans.push_back({last, b, invert});
    spans.push_back({b, e, !invert});
    last = e;
  }
  if (last < text.size()) spans.push_back({last, text.size(), invert});

  auto piece = [&](size_t b, size_t e) { return text.substr(b, e - b); };
  switch (behavior) {
    case SplitBehavior::kIsolated:
      for (const Span& s : spans) out->push_back(piece(s.begin, s.end));
      break;
    case SplitBehavior::kRemoved:
      for (const Span& s : spans) {
        if (!s.match) out->push_back(piece(s.begin, s.end));
      }
      break;
    case SplitBehavior::kMergedWithPrevious: {
      // A match extends the piece before it; text after a match starts anew.
      size_t start = 0;
      bool open = false;
      for (const Span& s : spans) {
        if (s.match) {
          if (!open) start = s.begin;
          out->push_back(piece(start, s.end));
          open = false;
        } else {
          if (open) out->push_back(piece(start, s.begin));
          start = s.begin;
          open = true;
        }
      }
      if (open) out->push_back(piece(start, text.size()));
      break;
    }
    case SplitBehavior::kMergedWithNext: {
      // A match starts a new piece that runs until the next match.
      size_t start = 0;
      bool open = false;
      for (const Span& s : spans) {
        if (s.match && open) {
          out->push_back(piece(start, s.begin));
          open = false;
        }
        if (!open) {
          start = s.begin;
          open = true;
        }
        if (s.match) continue;
      }
      if (open) out->push_back(piece(start, text.size()));
      break;
    }
    case SplitBehavior::kContiguous: {
      size_t i = 0;
      while (i < spans.size()) {
        size_t j = i + 1;
        if (spans[i].match) {
          while (j < spans.size() && spans[j].match && spans[j].begin == spans[j - 1].end) ++j;
        }
        out->push_back(piece(spans[i].begin, spans[j - 1].end));
        i = j;
      }
      break;
    }
  }
}

}  // namespace tokenfab
