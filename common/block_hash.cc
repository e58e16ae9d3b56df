#include "common/block_hash.h"

#include <cstring>

#include "xxhash.h"

namespace tokenfab {

uint64_t HashBytes(std::string_view bytes) { return XXH3_64bits(bytes.data(), bytes.size()); }

uint64_t HashBlock(uint64_t parent, std::span<const int32_t> tokens) {
  // The parent hash, then the token ids, little-endian, in one buffer.
  uint8_t buf[8 + 4 * 64];
  if (tokens.size() > 64) {
    std::vector<uint8_t> big(8 + 4 * tokens.size());
    std::memcpy(big.data(), &parent, 8);
    std::memcpy(big.data() + 8, tokens.data(), 4 * tokens.size());
    return XXH3_64bits(big.data(), big.size());
  }
  std::memcpy(buf, &parent, 8);
  std::memcpy(buf + 8, tokens.data(), 4 * tokens.size());
  return XXH3_64bits(buf, 8 + 4 * tokens.size());
}

std::vector<uint64_t> BlockHashes(std::span<const int32_t> tokens, int32_t block_size) {
  std::vector<uint64_t> out;
  out.reserve(tokens.size() / block_size);
  uint64_t parent = kRootBlockHash;
  for (size_t b = 0; (b + 1) * block_size <= tokens.size(); ++b) {
    parent = HashBlock(parent, tokens.subspan(b * block_size, block_size));
    out.push_back(parent);
  }
  return out;
}

}  // namespace tokenfab
