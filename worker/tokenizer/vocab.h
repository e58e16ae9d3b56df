// The token table a tokenizer encodes into: id -> text, score and attributes,
// and text -> id. Built by a loader, then immutable; any thread may read it.
#ifndef TOKENFAB_WORKER_TOKENIZER_VOCAB_H_
#define TOKENFAB_WORKER_TOKENIZER_VOCAB_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"

namespace tokenfab {

// Token attributes as llama.cpp derives them from GGUF token types
// (tokenizer.ggml.token_type: 1 normal, 2 unknown, 3 control, 4 user-defined,
// 5 unused, 6 byte). A bit set because llama.cpp's end-of-generation detection
// adds kControl to tokens of other types.
enum TokenAttr : uint8_t {
  kTokenNormal = 1 << 0,
  kTokenUnknown = 1 << 1,
  kTokenControl = 1 << 2,
  kTokenUserDefined = 1 << 3,
  kTokenUnused = 1 << 4,
  kTokenByte = 1 << 5,
};

struct Vocab {
  std::vector<std::string> texts;
  std::vector<float> scores;   // merge priority for SentencePiece-style models; else 0
  std::vector<uint8_t> attrs;  // TokenAttr bits
  // Text -> id for the model's own lookups (merges, byte fallback). With
  // duplicate texts the last id wins, as in llama.cpp's token_to_id.
  absl::flat_hash_map<std::string, int32_t> ids;

  int32_t size() const { return static_cast<int32_t>(texts.size()); }
  bool Contains(int32_t id) const { return id >= 0 && id < size(); }
  // -1 if absent.
  int32_t Find(std::string_view text) const {
    auto it = ids.find(absl::string_view(text.data(), text.size()));
    return it == ids.end() ? -1 : it->second;
  }
  bool Has(int32_t id, uint8_t attr) const { return Contains(id) && (attrs[id] & attr) != 0; }
};

// The "<0xAB>" text of a byte-fallback token.
std::string ByteTokenText(uint8_t byte);
// Parses "<0xAB>"; false if `text` is not of that form.
bool ParseByteTokenText(std::string_view text, uint8_t* byte);

}  // namespace tokenfab

#endif  // TOKENFAB_WORKER_TOKENIZER_VOCAB_H_
