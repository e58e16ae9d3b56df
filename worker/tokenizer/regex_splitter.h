// Splits text by a regular expression with the split behaviours of Hugging
// Face's pre-tokenizers (Isolated, Removed, MergedWithPrevious,
// MergedWithNext, Contiguous), backed by PCRE2 in UTF + UCP mode because the
// pre-tokenizer patterns need lookahead and Unicode classes.
//
// Matching follows the character classes of llama.cpp's Unicode tables and
// of Oniguruma (used by `tokenizers`) where PCRE2 10.42 differs: U+180E is not
// whitespace, and letters/numbers added in Unicode 15 and 15.1 count as such
// (see regex_splitter.cc). Immutable after Create(); any thread may call
// Split (match data is per call).
#ifndef TOKENFAB_WORKER_TOKENIZER_REGEX_SPLITTER_H_
#define TOKENFAB_WORKER_TOKENIZER_REGEX_SPLITTER_H_

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace tokenfab {

enum class SplitBehavior {
  kIsolated,            // matches and the text between them are separate pieces
  kRemoved,             // matches are dropped
  kMergedWithPrevious,  // a match joins the piece before it
  kMergedWithNext,      // a match joins the piece after it
  kContiguous,          // adjacent matches form one piece
};

// Parses Hugging Face's names ("Isolated", "MergedWithNext", ...).
absl::StatusOr<SplitBehavior> ParseSplitBehavior(std::string_view name);

class RegexSplitter {
 public:
  // `literal`: the pattern is a plain string, not a regex.
  static absl::StatusOr<std::unique_ptr<RegexSplitter>> Create(std::string_view pattern,
                                                               bool literal = false);
  ~RegexSplitter();
  RegexSplitter(const RegexSplitter&) = delete;
  RegexSplitter& operator=(const RegexSplitter&) = delete;

  // Byte ranges [begin, end) of the non-empty matches in `text`, which must
  // be valid UTF-8 except for encoded surrogates (see SanitizeUtf8LlamaStyle).
  std::vector<std::pair<size_t, size_t>> FindAll(std::string_view text) const;

  // Appends the pieces of `text` to `out` (empty pieces are never produced).
  // `invert` swaps the roles of matches and the text between them.
  void Split(std::string_view text, SplitBehavior behavior, bool invert,
             std::vector<std::string_view>* out) const;

  const std::string& pattern() const { return pattern_; }

 private:
  RegexSplitter() = default;
  std::string pattern_;
  void* code_ = nullptr;  // pcre2_code_8*, kept opaque so the header needs no PCRE2
};

}  // namespace tokenfab

#endif  // TOKENFAB_WORKER_TOKENIZER_REGEX_SPLITTER_H_
