// Text <-> token ids for the models tokenfab serves, matching llama.cpp (for
// GGUF files) and Hugging Face `tokenizers` (for tokenizer.json) id for id.
//
// Supported: byte-level BPE (GPT-2, Llama 3, Qwen2, SmolLM2) and
// SentencePiece-style BPE (Llama 2, Mistral v0.1), with special and added
// tokens split out of the text first. Created once by FromGguf or
// FromHfDirectory, then immutable: any thread may call any method
// concurrently.
#ifndef TOKENFAB_WORKER_TOKENIZER_TOKENIZER_H_
#define TOKENFAB_WORKER_TOKENIZER_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/model/gguf_file.h"
#include "worker/tokenizer/tokenizer_parts.h"

namespace tokenfab {

class Tokenizer {
 public:
  // From the tokenizer.ggml.* metadata; errors name the file and the key.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromGguf(const GgufFile& gguf);
  // From a folder holding tokenizer.json (plus optional tokenizer_config.json
  // for add_bos/add_eos and the bos/eos strings, and generation_config.json
  // for extra end-of-generation ids).
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromHfDirectory(const std::string& dir);

  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // add_bos: add the BOS (and EOS) tokens the model's defaults call for
  // (llama.cpp's add_special); false never adds them. parse_special: split
  // control/special tokens written in the text; user-defined (non-special
  // added) tokens are split either way, as in both references.
  std::vector<int32_t> Encode(std::string_view text, bool add_bos = false,
                              bool parse_special = true) const;
  // Concatenated token bytes as valid UTF-8 (ill-formed bytes -> U+FFFD).
  // Ids out of range are skipped. skip_special drops special tokens.
  std::string Decode(std::span<const int32_t> ids, bool skip_special = false) const;

  std::string TokenPiece(int32_t id) const;      // decoded bytes of one token
  std::string_view TokenText(int32_t id) const;  // the vocab string as stored
  int32_t TokenId(std::string_view text) const;  // exact vocab string -> id, -1 if absent

  int32_t vocab_size() const { return parts_.vocab.size(); }
  int32_t bos_id() const { return parts_.bos_id; }  // -1 if none
  int32_t eos_id() const { return parts_.eos_id; }
  int32_t unk_id() const { return parts_.unk_id; }
  bool add_bos_default() const { return parts_.add_bos; }
  bool add_eos_default() const { return parts_.add_eos; }
  bool IsEndOfGeneration(int32_t id) const;
  const std::vector<int32_t>& end_of_generation_ids() const { return parts_.end_of_generation_ids; }
  // Control/unknown tokens (GGUF) or added tokens marked special (tokenizer.json).
  bool IsSpecial(int32_t id) const;
  std::string bos_text() const;  // for chat templates; empty if none
  std::string eos_text() const;

  // For IncrementalDetokenizer: raw bytes of a token (no leading-space rule).
  std::string_view PieceBytes(int32_t id) const;
  bool decode_strips_leading_space() const { return parts_.decode_strips_leading_space; }

 private:
  explicit Tokenizer(TokenizerParts parts) : parts_(std::move(parts)) {}
  void EncodeText(std::string_view text, bool starts_input, bool after_special,
                  std::vector<int32_t>* out) const;

  const TokenizerParts parts_;
};

}  // namespace tokenfab

#endif  // TOKENFAB_WORKER_TOKENIZER_TOKENIZER_H_
