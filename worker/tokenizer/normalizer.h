// tokenizer.json normalizers that SentencePiece-style conversions use:
// Prepend (only to non-empty text) and Replace, possibly in a Sequence. NFC is
// accepted as a no-op (see the loader). Applied to each section of text
// between added tokens, as Hugging Face does. Immutable; any thread.
#ifndef TOKENFAB_WORKER_TOKENIZER_NORMALIZER_H_
#define TOKENFAB_WORKER_TOKENIZER_NORMALIZER_H_

#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "worker/tokenizer/regex_splitter.h"

namespace tokenfab {

class Normalizer {
 public:
  struct Prepend {
    std::string text;
  };
  struct Replace {
    std::shared_ptr<const RegexSplitter> pattern;  // literal or regex
    std::string content;
  };
  using Step = std::variant<Prepend, Replace>;

  void AddStep(Step step) { steps_.push_back(std::move(step)); }
  bool empty() const { return steps_.empty(); }
  std::string Apply(std::string_view text) const;

 private:
  std::vector<Step> steps_;
};

}  // namespace tokenfab

#endif  // TOKENFAB_WORKER_TOKENIZER_NORMALIZER_H_
