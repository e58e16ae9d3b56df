// Cuts input text at special and added tokens before any BPE runs, so that
// "<|im_start|>" in a prompt becomes one id instead of eight.
//
// Two matching orders, because the reference implementations differ:
//  - kLongestTokenFirst (llama.cpp's tokenizer_st_partition, for GGUF): for
//    each token, longest text first, every occurrence in the text not yet
//    claimed is cut out, left to right.
//  - kLeftmostLongest (Hugging Face's AddedVocabulary, for tokenizer.json):
//    scan left to right; at the first position where any token matches, take
//    the longest one there.
// lstrip/rstrip swallow ASCII whitespace in the first order (llama.cpp's
// isspace) and Unicode White_Space in the second (Rust's is_whitespace).
// Immutable after construction; any thread may call Split.
#ifndef TOKENFAB_WORKER_TOKENIZER_SPECIAL_TOKEN_SPLITTER_H_
#define TOKENFAB_WORKER_TOKENIZER_SPECIAL_TOKEN_SPLITTER_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace tokenfab {

struct SpecialTokenRule {
  int32_t id = -1;
  std::string text;
  // Only split when special parsing is on (llama.cpp: control and unknown
  // tokens; tokenizer.json: added tokens with "special": true).
  bool special = true;
  bool lstrip = false;       // also swallow whitespace before the token
  bool rstrip = false;       // ... and after it
  bool single_word = false;  // only match between word boundaries
};

// A piece of the input: either a token id, or text (token == -1) to encode.
// `offset` is where `text` starts in the input.
struct TextFragment {
  int32_t token = -1;
  std::string_view text;
  size_t offset = 0;
};

class SpecialTokenSplitter {
 public:
  enum class Order { kLongestTokenFirst, kLeftmostLongest };

  SpecialTokenSplitter() = default;
  SpecialTokenSplitter(std::vector<SpecialTokenRule> rules, Order order);

  std::vector<TextFragment> Split(std::string_view text, bool parse_special) const;
  const std::vector<SpecialTokenRule>& rules() const { return rules_; }

 private:
  std::vector<TextFragment> SplitLongestTokenFirst(std::string_view text, bool parse_special) const;
  std::vector<TextFragment> SplitLeftmostLongest(std::string_view text, bool parse_special) const;

  std::vector<SpecialTokenRule> rules_;  // longest text first
  Order order_ = Order::kLongestTokenFirst;
  // kLeftmostLongest: rule indices by first byte of their text, longest first.
  std::vector<std::vector<uint32_t>> by_first_byte_;
};

}  // namespace tokenfab

#endif  // TOKENFAB_WORKER_TOKENIZER_SPECIAL_TOKEN_SPLITTER_H_
