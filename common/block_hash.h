// Chained hashes of full KV blocks, the key of the prefix cache and of the
// router's KV index: hash(block i) = XXH3-64 of (hash of block i-1, the
// block's token ids). Equal hashes mean equal prefixes, so a worker and the
// router agree on what is cached without exchanging tokens.
#ifndef TOKENFAB_COMMON_BLOCK_HASH_H_
#define TOKENFAB_COMMON_BLOCK_HASH_H_

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace tokenfab {

// XXH3-64 of arbitrary bytes (model fingerprints and the like).
uint64_t HashBytes(std::string_view bytes);

// The parent hash of a sequence's first block.
inline constexpr uint64_t kRootBlockHash = 0;

uint64_t HashBlock(uint64_t parent, std::span<const int32_t> tokens);

// Hashes of the full blocks of `tokens` (a trailing partial block has none).
std::vector<uint64_t> BlockHashes(std::span<const int32_t> tokens, int32_t block_size);

}  // namespace tokenfab

#endif  // TOKENFAB_COMMON_BLOCK_HASH_H_
