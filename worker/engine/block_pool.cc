#include "worker/engine/block_pool.h"

namespace tokenfab {

BlockPool::BlockPool(int32_t num_blocks) : blocks_(num_blocks) {
  free_.reserve(num_blocks);
  // Low ids first out of the stack.
  for (int32_t b = num_blocks - 1; b >= 0; --b) free_.push_back(b);
}

std::vector<int32_t> BlockPool::AcquireCached(std::span<const uint64_t> hashes) {
  std::vector<int32_t> out;
  prefix_queries_ += static_cast<int64_t>(hashes.size());
  for (uint64_t h : hashes) {
    auto it = cached_.find(h);
    if (it == cached_.end()) break;
    const int32_t b = it->second;
    Block& block = blocks_[b];
    if (block.refs == 0) {
      lru_.erase(block.lru_pos);
      ++num_used_;
    }
    ++block.refs;
    out.push_back(b);
  }
  prefix_hits_ += static_cast<int64_t>(out.size());
  return out;
}

std::optional<int32_t> BlockPool::Allocate() {
  int32_t b;
  if (!free_.empty()) {
    b = free_.back();
    free_.pop_back();
  } else if (!lru_.empty()) {
    b = lru_.front();
    lru_.pop_front();
    Evict(b);
  } else {
    return std::nullopt;
  }
  blocks_[b].refs = 1;
  ++num_used_;
  return b;
}

void BlockPool::Evict(int32_t b) {
  Block& block = blocks_[b];
  if (!block.hash) return;
  cached_.erase(*block.hash);
  internal::v1::KvEvent e;
  e.set_kind(internal::v1::KvEvent::REMOVED);
  e.add_block_hashes(*block.hash);
  events_.push_back(std::move(e));
  block.hash.reset();
}

void BlockPool::Commit(int32_t b, uint64_t hash, uint64_t parent) {
  Block& block = blocks_[b];
  if (block.hash || cached_.contains(hash)) return;
  block.hash = hash;
  cached_.emplace(hash, b);
  internal::v1::KvEvent e;
  e.set_kind(internal::v1::KvEvent::STORED);
  e.add_block_hashes(hash);
  e.set_parent_hash(parent);
  events_.push_back(std::move(e));
}

void BlockPool::Release(int32_t b) {
  Block& block = blocks_[b];
  if (block.refs <= 0) return;  // defensive: a double release is a caller bug
  if (--block.refs > 0) return;
  --num_used_;
  if (block.hash) {
    lru_.push_back(b);
    block.lru_pos = std::prev(lru_.end());
  } else {
    free_.push_back(b);
  }
}

std::vector<internal::v1::KvEvent> BlockPool::TakeEvents() { return std::exchange(events_, {}); }

}  // namespace tokenfab
