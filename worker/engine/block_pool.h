// The worker's fixed pool of KV blocks: reference counts, and a prefix cache
// that keeps full blocks after their sequences end, keyed by chained block
// hash (common/block_hash.h), evicted least recently used first when free
// blocks run out. Every change to the cache is recorded as a KV event for the
// router's index.
//
// Owned and used by the engine thread only.
#ifndef TOKENFAB_WORKER_ENGINE_BLOCK_POOL_H_
#define TOKENFAB_WORKER_ENGINE_BLOCK_POOL_H_

#include <cstdint>
#include <list>
#include <optional>
#include <utility>
#include <span>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "tokenfab/internal/v1/worker.pb.h"

namespace tokenfab {

class BlockPool {
 public:
  explicit BlockPool(int32_t num_blocks);

  int32_t num_blocks() const { return static_cast<int32_t>(blocks_.size()); }
  // Blocks some sequence references.
  int32_t num_used() const { return num_used_; }
  // Blocks nobody references that still hold a cached prefix (evictable).
  int32_t num_cached_free() const { return static_cast<int32_t>(lru_.size()); }
  // Blocks Allocate() can return: free ones plus evictable cached ones.
  int32_t num_available() const { return num_blocks() - num_used_; }

  // The longest run of `hashes` (a sequence's full-block hashes, in order)
  // that is cached, as block ids; each returned block gains a reference.
  std::vector<int32_t> AcquireCached(std::span<const uint64_t> hashes);

  // A block for new tokens, with one reference: a never-cached free block if
  // there is one, else the least recently used cached block (evicted).
  std::optional<int32_t> Allocate();

  // Declares that `block`, now full, holds the block with `hash` (whose
  // predecessor is `parent`). If another block already caches that hash, this
  // one stays uncached (a duplicate computed concurrently).
  void Commit(int32_t block, uint64_t hash, uint64_t parent);

  // Drops one reference; at zero a cached block becomes evictable (most
  // recently used) and an uncached one free.
  void Release(int32_t block);

  // The KV events since the last call.
  std::vector<internal::v1::KvEvent> TakeEvents();

  int64_t prefix_queries() const { return prefix_queries_; }  // blocks looked up
  int64_t prefix_hits() const { return prefix_hits_; }        // blocks found

 private:
  struct Block {
    int32_t refs = 0;
    std::optional<uint64_t> hash;
    std::list<int32_t>::iterator lru_pos;  // valid while in lru_
  };

  void Evict(int32_t block);

  std::vector<Block> blocks_;
  std::vector<int32_t> free_;  // never-cached or evicted blocks, used as a stack
  std::list<int32_t> lru_;     // cached blocks with no references, oldest first
  absl::flat_hash_map<uint64_t, int32_t> cached_;  // hash -> block
  int32_t num_used_ = 0;
  std::vector<internal::v1::KvEvent> events_;
  int64_t prefix_queries_ = 0;
  int64_t prefix_hits_ = 0;
};

}  // namespace tokenfab

#endif  // TOKENFAB_WORKER_ENGINE_BLOCK_POOL_H_
