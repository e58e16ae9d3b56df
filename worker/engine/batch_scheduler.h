// Iteration-level (continuous) batching: before every forward step it decides
// which sequences run and with how many tokens.
//
//  - Running sequences go first, oldest first: a decode token each, or the
//    next chunk of a prompt still being prefilled, within the step's token
//    budget.
//  - Waiting sequences are then admitted by priority, then arrival, while the
//    budget and the sequence limit allow; each reuses the longest cached
//    prefix of its tokens and gets blocks for its first chunk.
//  - A sequence the router marked for remote prefill gets blocks for its
//    whole prompt at admission and waits (not scheduled) until its KV has
//    arrived; the engine starts the transfer (TakeRemoteStarts).
//  - When a running sequence needs a block and none is left, the newest
//    running sequence is preempted: its blocks are freed and it waits to be
//    recomputed (its generated tokens are kept and become part of what it
//    recomputes, so its output continues unchanged).
//
// Engine thread only.
#ifndef TOKENFAB_WORKER_ENGINE_BATCH_SCHEDULER_H_
#define TOKENFAB_WORKER_ENGINE_BATCH_SCHEDULER_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "worker/engine/block_pool.h"
#include "worker/engine/sequence.h"

namespace tokenfab {

struct SchedulerOptions {
  int32_t max_num_seqs = 32;         // sequences in one step
  int32_t max_batched_tokens = 512;  // tokens in one step (prefill chunks + decodes)
  int32_t max_queue = 256;           // sequences waiting to be admitted
};

struct ScheduledSequence {
  Sequence* seq;
  int32_t num_tokens;  // tokens to compute this step, from seq->num_computed
};

class BatchScheduler {
 public:
  BatchScheduler(const SchedulerOptions& options, BlockPool* pool);

  // Queues a sequence. ResourceExhausted when max_queue sequences wait.
  absl::Status Add(std::unique_ptr<Sequence> seq);

  // Plans the next step and allocates its blocks. Empty when nothing can run.
  [[nodiscard]] std::vector<ScheduledSequence> Schedule();

  // After a step: advances the sequence's computed count and registers its
  // newly full blocks in the prefix cache.
  void Computed(Sequence* seq, int32_t num_tokens);

  // Removes a sequence (finished or cancelled), releasing its blocks.
  std::unique_ptr<Sequence> Remove(Sequence* seq);

  // Sequences admitted for remote prefill since the last call.
  std::vector<Sequence*> TakeRemoteStarts() { return std::exchange(remote_starts_, {}); }
  // Requests whose remote prefill was given up by a preemption.
  std::vector<std::string> TakeRemoteAborts() { return std::exchange(remote_aborts_, {}); }

  const std::vector<std::unique_ptr<Sequence>>& running() const { return running_; }
  const std::deque<std::unique_ptr<Sequence>>& waiting() const { return waiting_; }
  int64_t preemptions() const { return preemptions_; }

 private:
  // Gives `seq` blocks for its first `tokens` positions, preempting newer
  // running sequences when the pool is empty. False if it cannot.
  bool EnsureBlocks(Sequence* seq, int32_t tokens, bool may_preempt);
  void Preempt(size_t running_index);
  void ReleaseBlocks(Sequence* seq);
  bool Admit(Sequence* seq, int32_t budget, int32_t* take);
  void InsertWaiting(std::unique_ptr<Sequence> seq);

  SchedulerOptions options_;
  BlockPool* pool_;
  std::vector<std::unique_ptr<Sequence>> running_;  // admission order, oldest first
  std::deque<std::unique_ptr<Sequence>> waiting_;   // priority, then arrival
  int64_t preemptions_ = 0;
  std::vector<Sequence*> remote_starts_;
  std::vector<std::string> remote_aborts_;
};

}  // namespace tokenfab

#endif  // TOKENFAB_WORKER_ENGINE_BATCH_SCHEDULER_H_
