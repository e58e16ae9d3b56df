#include "worker/engine/batch_scheduler.h"

#include <algorithm>

#include "common/strings.h"
#include "worker/engine/kv_cache.h"

namespace tokenfab {
namespace {

int32_t BlocksFor(int32_t tokens) { return (tokens + kKvBlockSize - 1) / kKvBlockSize; }

// Higher priority first, then earlier arrival.
bool RunsBefore(const Sequence& a, const Sequence& b) {
  if (a.request.priority() != b.request.priority())
    return a.request.priority() > b.request.priority();
  return a.arrival < b.arrival;
}

}  // namespace

BatchScheduler::BatchScheduler(const SchedulerOptions& options, BlockPool* pool)
    : options_(options), pool_(pool) {}

absl::Status BatchScheduler::Add(std::unique_ptr<Sequence> seq) {
  if (static_cast<int32_t>(waiting_.size()) >= options_.max_queue) {
    return absl::ResourceExhaustedError(
        StrCat("the queue is full (", options_.max_queue, " requests waiting)"));
  }
  InsertWaiting(std::move(seq));
  return absl::OkStatus();
}

void BatchScheduler::InsertWaiting(std::unique_ptr<Sequence> seq) {
  auto pos = std::find_if(waiting_.begin(), waiting_.end(),
                          [&](const std::unique_ptr<Sequence>& w) { return RunsBefore(*seq, *w); });
  waiting_.insert(pos, std::move(seq));
}

void BatchScheduler::ReleaseBlocks(Sequence* seq) {
  for (int32_t b : seq->block_table) pool_->Release(b);
  seq->block_table.clear();
  seq->num_computed = 0;
  seq->num_committed = 0;
  seq->last_hash = kRootBlockHash;
}

void BatchScheduler::Preempt(size_t index) {
  std::unique_ptr<Sequence> seq = std::move(running_[index]);
  running_.erase(running_.begin() + static_cast<std::ptrdiff_t>(index));
  ReleaseBlocks(seq.get());
  if (seq->awaiting_kv) {
    seq->awaiting_kv = false;
    ++seq->remote_generation;
    remote_aborts_.push_back(seq->request.request_id());
  }
  ++seq->preemptions;
  ++preemptions_;
  InsertWaiting(std::move(seq));
}

bool BatchScheduler::EnsureBlocks(Sequence* seq, int32_t tokens, bool may_preempt) {
  while (static_cast<int32_t>(seq->block_table.size()) < BlocksFor(tokens)) {
    if (std::optional<int32_t> b = pool_->Allocate()) {
      seq->block_table.push_back(*b);
      continue;
    }
    if (!may_preempt || running_.empty()) return false;
    const bool self = running_.back().get() == seq;
    Preempt(running_.size() - 1);  // the newest
    if (self) return false;
  }
  return true;
}

bool BatchScheduler::Admit(Sequence* seq, int32_t budget, int32_t* take) {
  // At least the last token is computed so the step yields its logits: only
  // blocks entirely before it may come from the cache.
  const int32_t n = static_cast<int32_t>(seq->tokens.size());
  const int32_t max_hit_blocks = (n - 1) / kKvBlockSize;
  const std::vector<uint64_t> hashes =
      BlockHashes(std::span<const int32_t>(seq->tokens)
                      .first(static_cast<size_t>(max_hit_blocks) * kKvBlockSize),
                  kKvBlockSize);
  seq->block_table = pool_->AcquireCached(hashes);
  const int32_t hit = static_cast<int32_t>(seq->block_table.size());
  seq->num_computed = hit * kKvBlockSize;
  seq->num_committed = hit;
  seq->last_hash = hit > 0 ? hashes[hit - 1] : kRootBlockHash;
  if (!seq->admitted_before) seq->cached_tokens = seq->num_computed;
  if (seq->request.has_remote_prefill() && !seq->remote_tried && n - 1 > seq->num_computed) {
    // Blocks for the whole prompt now; the KV of all but its last token comes
    // from the prefill worker, the last one is computed here for the logits.
    if (!EnsureBlocks(seq, n, /*may_preempt=*/false)) {
      ReleaseBlocks(seq);
      return false;
    }
    seq->remote_tried = true;
    seq->awaiting_kv = true;
    seq->remote_end = n - 1;
    seq->admitted_before = true;
    remote_starts_.push_back(seq);
    *take = 0;
    return true;
  }
  *take = std::min(seq->uncomputed(), budget);
  if (!EnsureBlocks(seq, seq->num_computed + *take, /*may_preempt=*/false)) {
    ReleaseBlocks(seq);
    return false;
  }
  seq->admitted_before = true;
  return true;
}

std::vector<ScheduledSequence> BatchScheduler::Schedule() {
  std::vector<ScheduledSequence> plan;
  int32_t budget = options_.max_batched_tokens;
  const int64_t preemptions_before = preemptions_;

  for (size_t i = 0; i < running_.size() && budget > 0;) {
    Sequence* seq = running_[i].get();
    const int32_t take = seq->awaiting_kv ? 0 : std::min(seq->uncomputed(), budget);
    if (take <= 0) {
      ++i;
      continue;
    }
    if (!EnsureBlocks(seq, seq->num_computed + take, /*may_preempt=*/true)) {
      // It was the newest and has been preempted itself; nothing after it.
      break;
    }
    plan.push_back({seq, take});
    budget -= take;
    ++i;
  }

  // Admit only when nothing had to be preempted: blocks are short.
  while (preemptions_ == preemptions_before && !waiting_.empty() && budget > 0 &&
         static_cast<int32_t>(running_.size()) < options_.max_num_seqs) {
    Sequence* seq = waiting_.front().get();
    int32_t take = 0;
    if (!Admit(seq, budget, &take)) break;
    if (take > 0) plan.push_back({seq, take});
    budget -= take;
    running_.push_back(std::move(waiting_.front()));
    waiting_.pop_front();
  }
  return plan;
}

void BatchScheduler::Computed(Sequence* seq, int32_t num_tokens) {
  seq->num_computed += num_tokens;
  while (seq->num_committed < seq->num_computed / kKvBlockSize) {
    const int32_t c = seq->num_committed;
    const uint64_t hash = HashBlock(
        seq->last_hash, std::span<const int32_t>(seq->tokens)
                            .subspan(static_cast<size_t>(c) * kKvBlockSize, kKvBlockSize));
    pool_->Commit(seq->block_table[c], hash, seq->last_hash);
    seq->last_hash = hash;
    ++seq->num_committed;
  }
}

std::unique_ptr<Sequence> BatchScheduler::Remove(Sequence* seq) {
  std::unique_ptr<Sequence> out;
  if (auto it = std::find_if(running_.begin(), running_.end(),
                             [&](const std::unique_ptr<Sequence>& s) { return s.get() == seq; });
      it != running_.end()) {
    out = std::move(*it);
    running_.erase(it);
  } else if (auto wit =
                 std::find_if(waiting_.begin(), waiting_.end(),
                              [&](const std::unique_ptr<Sequence>& s) { return s.get() == seq; });
             wit != waiting_.end()) {
    out = std::move(*wit);
    waiting_.erase(wit);
  }
  if (out) ReleaseBlocks(out.get());
  return out;
}

}  // namespace tokenfab
