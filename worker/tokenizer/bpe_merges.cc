#include "worker/tokenizer/bpe_merges.h"

#include <algorithm>

namespace tokenfab {
namespace {

struct Candidate {
  int32_t rank;
  int32_t left;  // symbol index
  int32_t right;
  int32_t left_id;
  int32_t right_id;
  int32_t result;
};

// Min-heap order: lowest rank, then leftmost.
struct CandidateAfter {
  bool operator()(const Candidate& a, const Candidate& b) const {
    return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
  }
};

}  // namespace

void MergeTable::Add(int32_t left, int32_t right, int32_t result, int32_t rank) {
  merges_.try_emplace(Key(left, right), Merge{rank, result});
}

const MergeTable::Merge* MergeTable::Find(int32_t left, int32_t right) const {
  auto it = merges_.find(Key(left, right));
  return it == merges_.end() ? nullptr : &it->second;
}

void MergeTable::ApplyMerges(std::vector<int32_t>* ids) const {
  std::vector<int32_t>& sym = *ids;
  const int32_t n = static_cast<int32_t>(sym.size());
  if (n < 2) return;

  // Doubly linked list over the symbols; merged-away symbols get id kDead.
  constexpr int32_t kDead = -2;
  std::vector<int32_t> prev(n), next(n);
  for (int32_t i = 0; i < n; ++i) {
    prev[i] = i - 1;
    next[i] = i + 1 < n ? i + 1 : -1;
  }

  std::vector<Candidate> heap;
  heap.reserve(n);
  auto push = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0 || sym[left] < 0 || sym[right] < 0) return;
    const Merge* m = Find(sym[left], sym[right]);
    if (m == nullptr) return;
    heap.push_back({m->rank, left, right, sym[left], sym[right], m->result});
    std::push_heap(heap.begin(), heap.end(), CandidateAfter());
  };
  for (int32_t i = 0; i + 1 < n; ++i) push(i, i + 1);

  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), CandidateAfter());
    const Candidate c = heap.back();
    heap.pop_back();
    // Stale if either side has changed since the candidate was queued.
    if (sym[c.left] != c.left_id || next[c.left] != c.right || sym[c.right] != c.right_id) continue;
    sym[c.left] = c.result;
    sym[c.right] = kDead;
    next[c.left] = next[c.right];
    if (next[c.right] >= 0) prev[next[c.right]] = c.left;
    push(prev[c.left], c.left);
    push(c.left, next[c.left]);
  }
  sym.erase(std::remove(sym.begin(), sym.end(), kDead), sym.end());
}

}  // namespace tokenfab
