#include "worker/engine/backend.h"

#include "absl/container/flat_hash_set.h"
#include "common/strings.h"

namespace tokenfab {

absl::Status ValidateBatch(std::span<const SequenceStep> batch, const ModelConfig& config,
                           int32_t num_blocks) {
  if (batch.empty()) return absl::InvalidArgumentError("empty batch");
  for (size_t s = 0; s < batch.size(); ++s) {
    const SequenceStep& seq = batch[s];
    if (seq.tokens.empty()) {
      return absl::InvalidArgumentError(StrCat("sequence ", s, " of the batch has no tokens"));
    }
    if (seq.start_position < 0) {
      return absl::InvalidArgumentError(StrCat("sequence ", s, " starts at a negative position"));
    }
    const int64_t end = static_cast<int64_t>(seq.start_position) + seq.tokens.size();
    if (end > config.context_length) {
      return absl::InvalidArgumentError(StrCat("sequence ", s, " reaches position ", end,
                                               ", beyond the context length ",
                                               config.context_length));
    }
    const int64_t blocks_needed = (end + kKvBlockSize - 1) / kKvBlockSize;
    if (static_cast<int64_t>(seq.block_table.size()) < blocks_needed) {
      return absl::InvalidArgumentError(StrCat("sequence ", s, " needs ", blocks_needed,
                                               " KV blocks but its table has ",
                                               seq.block_table.size()));
    }
    for (int64_t b = 0; b < blocks_needed; ++b) {
      if (seq.block_table[b] < 0 || seq.block_table[b] >= num_blocks) {
        return absl::InvalidArgumentError(
            StrCat("sequence ", s, " uses KV block ", seq.block_table[b], " of ", num_blocks));
      }
    }
    for (int32_t t : seq.tokens) {
      if (t < 0 || t >= config.vocab_size) {
        return absl::InvalidArgumentError(
            StrCat("token id ", t, " is outside the vocabulary of ", config.vocab_size));
      }
    }
  }
  // Two new tokens writing the same cache slot (a block listed twice, or a
  // block shared by two sequences that both write it) would race and corrupt
  // attention; it is a scheduler bug, caught here.
  absl::flat_hash_set<int64_t> slots;
  for (size_t s = 0; s < batch.size(); ++s) {
    const SequenceStep& seq = batch[s];
    for (size_t i = 0; i < seq.tokens.size(); ++i) {
      const int64_t pos = seq.start_position + static_cast<int64_t>(i);
      const int64_t slot =
          static_cast<int64_t>(seq.block_table[pos / kKvBlockSize]) * kKvBlockSize +
          pos % kKvBlockSize;
      if (!slots.insert(slot).second) {
        return absl::InvalidArgumentError(StrCat(
            "sequence ", s, " writes KV block ", seq.block_table[pos / kKvBlockSize], " slot ",
            pos % kKvBlockSize, ", which another token of ", "this step also writes"));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status CheckKvRange(const ModelConfig& config, const KvLayout& layout, int32_t num_blocks,
                          int32_t layer, std::span<const int32_t> block_table, int32_t first,
                          int32_t count, size_t bytes) {
  if (layer < 0 || layer >= layout.num_layers) {
    return absl::InvalidArgumentError(StrCat("KV layer ", layer, " of ", layout.num_layers));
  }
  const int64_t end = static_cast<int64_t>(first) + count;
  if (first < 0 || count < 0 || end > config.context_length) {
    return absl::InvalidArgumentError(StrCat("KV positions [", first, ", ", end,
                                             ") are outside the context of ",
                                             config.context_length));
  }
  if (static_cast<int64_t>(block_table.size()) * kKvBlockSize < end) {
    return absl::InvalidArgumentError(StrCat("KV positions up to ", end, " need more than the ",
                                             block_table.size(), " blocks of the table"));
  }
  for (int64_t b = first / kKvBlockSize; b < (end + kKvBlockSize - 1) / kKvBlockSize; ++b) {
    if (block_table[b] < 0 || block_table[b] >= num_blocks) {
      return absl::InvalidArgumentError(StrCat("KV block ", block_table[b], " of ", num_blocks));
    }
  }
  if (bytes != static_cast<size_t>(layout.PositionBytes() * count)) {
    return absl::InvalidArgumentError(StrCat("KV buffer of ", bytes, " bytes for ", count,
                                             " positions of ", layout.PositionBytes()));
  }
  return absl::OkStatus();
}

}  // namespace tokenfab
