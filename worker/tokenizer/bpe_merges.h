// Rank-ordered BPE merging over token ids, shared by byte-level BPE (GPT-2,
// Llama 3, Qwen2, SmolLM2) and the character-level BPE of tokenizer.json files.
//
// Merges are applied lowest rank first, leftmost first among equal ranks,
// re-examining the neighbours of every merged pair: the order of llama.cpp's
// llm_tokenizer_bpe_session and of Hugging Face's Word::merge_all. Immutable
// after building; any thread may call ApplyMerges.
#ifndef TOKENFAB_WORKER_TOKENIZER_BPE_MERGES_H_
#define TOKENFAB_WORKER_TOKENIZER_BPE_MERGES_H_

#include <cstdint>
#include <vector>

#include "absl/container/flat_hash_map.h"

namespace tokenfab {

class MergeTable {
 public:
  struct Merge {
    int32_t rank;
    int32_t result;  // id of the merged token
  };

  // Adds the merge of (left, right) into `result` with rank `rank`. An earlier
  // merge of the same pair wins, as in both reference implementations.
  void Add(int32_t left, int32_t right, int32_t result, int32_t rank);
  // nullptr if the pair never merges.
  const Merge* Find(int32_t left, int32_t right) const;
  size_t size() const { return merges_.size(); }

  // Merges `ids` in place until no adjacent pair has a merge. Ids below 0 never
  // merge (they stand for pieces missing from the vocabulary).
  void ApplyMerges(std::vector<int32_t>* ids) const;

 private:
  static uint64_t Key(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) |
           static_cast<uint32_t>(right);
  }
  absl::flat_hash_map<uint64_t, Merge> merges_;
};

}  // namespace tokenfab

#endif  // TOKENFAB_WORKER_TOKENIZER_BPE_MERGES_H_
