// Rank-based BPE over one pre-tokenized word, in two input modes:
//  - byte level (GPT-2, Llama 3, Qwen2, SmolLM2): every byte starts as the
//    token of its GPT-2 byte character;
//  - character level (tokenizer.json BPE models such as converted Llama 2 /
//    Mistral): every UTF-8 character starts as its own token, or as <0xXX>
//    byte tokens (byte_fallback), or as the unknown token.
// Immutable after construction; any thread may call EncodeWord.
#ifndef TOKENFAB_WORKER_TOKENIZER_BPE_MODEL_H_
#define TOKENFAB_WORKER_TOKENIZER_BPE_MODEL_H_

#include <array>
#include <cstdint>
#include <string_view>
#include <vector>

#include "worker/tokenizer/bpe_merges.h"
#include "worker/tokenizer/vocab.h"

namespace tokenfab {

struct BpeOptions {
  bool byte_level = true;
  // A word that is itself a token is emitted whole (llama.cpp's ignore_merges
  // for Llama 3; tokenizer.json's "ignore_merges").
  bool ignore_merges = false;
  bool byte_fallback = false;  // character level only
  int32_t unk_id = -1;         // for pieces with no token; -1: drop them (llama.cpp)
  bool fuse_unk = false;       // consecutive unknowns become one
};

class BpeModel {
 public:
  BpeModel() = default;
  BpeModel(const Vocab& vocab, MergeTable merges, BpeOptions options);

  // Appends the ids of `word` (raw bytes for byte level, normalized text for
  // character level) to `out`.
  void EncodeWord(const Vocab& vocab, std::string_view word, std::vector<int32_t>* out) const;

  const MergeTable& merges() const { return merges_; }
  const BpeOptions& options() const { return options_; }

 private:
  void InitialSymbols(const Vocab& vocab, std::string_view word, std::vector<int32_t>* ids) const;

  MergeTable merges_;
  BpeOptions options_;
  std::array<int32_t, 256> byte_ids_{};      // byte level: byte -> token, or -1
  std::array<int32_t, 256> fallback_ids_{};  // <0xXX> tokens, or -1
};

}  // namespace tokenfab

#endif  // TOKENFAB_WORKER_TOKENIZER_BPE_MODEL_H_
