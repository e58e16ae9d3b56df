// Pre-tokenization: cuts normalized text into the words that BPE merges never
// cross. A PreTokenizer is a sequence of steps, each refining the pieces the
// previous one produced, which covers both llama.cpp (a list of regexes chosen
// by GGUF `tokenizer.ggml.pre`) and tokenizer.json (`pre_tokenizer`: Split,
// ByteLevel, Digits, Metaspace, Sequence). Byte-level mapping itself is left to
// the BPE model, which maps raw bytes straight to token ids.
// Immutable once built; any thread may call Run.
#ifndef TOKENFAB_WORKER_TOKENIZER_PRE_TOKENIZER_H_
#define TOKENFAB_WORKER_TOKENIZER_PRE_TOKENIZER_H_

#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/tokenizer/regex_splitter.h"

namespace tokenfab {

// What llama.cpp does for a GGUF `tokenizer.ggml.pre` value (empty: its
// "default"): the regexes it applies in order, whether a word that is itself
// a token skips the merges, and the add_bos default when the file has no
// tokenizer.ggml.add_bos_token. NotFound for types not supported.
struct LlamaCppPreTokenizer {
  std::vector<std::string> regexes;
  bool ignore_merges = false;
  bool add_bos = false;
};
absl::StatusOr<LlamaCppPreTokenizer> LlamaCppPreTokenizerFor(std::string_view pre);

// GPT-2's split regex as Hugging Face's ByteLevel pre-tokenizer uses it.
inline constexpr std::string_view kGpt2SplitRegex =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

class PreTokenizer {
 public:
  struct RegexSplit {
    std::shared_ptr<const RegexSplitter> splitter;
    SplitBehavior behavior = SplitBehavior::kIsolated;
    bool invert = false;
  };
  // tokenizer.json ByteLevel: optional prefix space, optional GPT-2 split.
  struct ByteLevel {
    bool add_prefix_space = false;
    std::shared_ptr<const RegexSplitter> splitter;  // null: use_regex false
  };
  // tokenizer.json Metaspace: spaces become `replacement`, which is also
  // prepended (always, or on the text's first section only), optionally
  // splitting before each replacement.
  struct Metaspace {
    enum class Prepend { kAlways, kFirst, kNever };
    std::string replacement = "\xE2\x96\x81";  // U+2581
    Prepend prepend = Prepend::kAlways;
    bool split = true;
  };
  using Step = std::variant<RegexSplit, ByteLevel, Metaspace>;

  void AddStep(Step step) { steps_.push_back(std::move(step)); }
  bool empty() const { return steps_.empty(); }

  // Cuts `text` (valid UTF-8) into words. `first_section` says whether the
  // text starts at offset 0 of the caller's input (Metaspace kFirst).
  std::vector<std::string> Run(std::string_view text, bool first_section) const;

 private:
  std::vector<Step> steps_;
};

}  // namespace tokenfab

#endif  // TOKENFAB_WORKER_TOKENIZER_PRE_TOKENIZER_H_
