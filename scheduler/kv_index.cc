#include "scheduler/kv_index.h"

#include <vector>

namespace tokenfab {

void KvIndex::Add(const std::string& worker, uint64_t hash) {
  if (by_worker_[worker].insert(hash).second) holders_[hash].insert(worker);
}

void KvIndex::Remove(const std::string& worker, uint64_t hash) {
  auto w = by_worker_.find(worker);
  if (w == by_worker_.end() || w->second.erase(hash) == 0) return;
  auto h = holders_.find(hash);
  if (h == holders_.end()) return;
  h->second.erase(worker);
  if (h->second.empty()) holders_.erase(h);
}

void KvIndex::Apply(const std::string& worker, const internal::v1::KvEvent& e) {
  for (uint64_t hash : e.block_hashes()) {
    if (e.kind() == internal::v1::KvEvent::STORED) {
      Add(worker, hash);
    } else if (e.kind() == internal::v1::KvEvent::REMOVED) {
      Remove(worker, hash);
    }
  }
}

void KvIndex::Replace(const std::string& worker, std::span<const uint64_t> hashes) {
  RemoveWorker(worker);
  for (uint64_t h : hashes) Add(worker, h);
}

void KvIndex::RemoveWorker(const std::string& worker) {
  auto w = by_worker_.find(worker);
  if (w == by_worker_.end()) return;
  for (uint64_t hash : w->second) {
    auto h = holders_.find(hash);
    if (h == holders_.end()) continue;
    h->second.erase(worker);
    if (h->second.empty()) holders_.erase(h);
  }
  by_worker_.erase(w);
}

absl::flat_hash_map<std::string, int32_t> KvIndex::PrefixMatches(
    std::span<const uint64_t> hashes) const {
  absl::flat_hash_map<std::string, int32_t> depth;
  if (hashes.empty()) return depth;
  auto first = holders_.find(hashes[0]);
  if (first == holders_.end()) return depth;
  std::vector<std::string> alive(first->second.begin(), first->second.end());
  for (const std::string& w : alive) depth[w] = 1;
  // Chained hashes: a worker's run ends at the first block it lacks.
  for (size_t i = 1; i < hashes.size() && !alive.empty(); ++i) {
    auto h = holders_.find(hashes[i]);
    if (h == holders_.end()) break;
    std::erase_if(alive, [&](const std::string& w) { return !h->second.contains(w); });
    for (const std::string& w : alive) depth[w] = static_cast<int32_t>(i + 1);
  }
  return depth;
}

int64_t KvIndex::BlocksOf(const std::string& worker) const {
  auto w = by_worker_.find(worker);
  return w == by_worker_.end() ? 0 : static_cast<int64_t>(w->second.size());
}

}  // namespace tokenfab
