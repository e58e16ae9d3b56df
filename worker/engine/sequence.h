// One request's state inside a worker: its tokens (prompt, then generated),
// how many of them have their keys and values in the cache, the blocks that
// hold them, and its sampler. Owned by the batch scheduler, touched only on
// the engine thread.
#ifndef TOKENFAB_WORKER_ENGINE_SEQUENCE_H_
#define TOKENFAB_WORKER_ENGINE_SEQUENCE_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "common/block_hash.h"
#include "tokenfab/internal/v1/worker.pb.h"
#include "worker/engine/sampler.h"

namespace tokenfab {

struct Sequence {
  using OutputCallback = std::function<void(const internal::v1::WorkerOutput&)>;

  internal::v1::WorkerRequest request;
  OutputCallback on_output;
  uint64_t arrival = 0;  // admission order, for FIFO and preemption
  std::chrono::system_clock::time_point deadline = std::chrono::system_clock::time_point::max();

  std::vector<int32_t> tokens;  // prompt, then generated tokens
  int32_t prompt_len = 0;
  absl::flat_hash_set<int32_t> stop_ids;
  std::unique_ptr<Sampler> sampler;

  // Cache state; reset when the sequence is preempted.
  int32_t num_computed = 0;          // tokens whose K/V are in the cache
  std::vector<int32_t> block_table;  // block of positions 16*i .. 16*i+15
  int32_t num_committed = 0;         // leading blocks registered in the prefix cache
  uint64_t last_hash = kRootBlockHash;

  bool admitted_before = false;
  int32_t cached_tokens = 0;  // prompt tokens found in the prefix cache at first admission
  int32_t preemptions = 0;
  bool cancelled = false;

  int32_t generated() const { return static_cast<int32_t>(tokens.size()) - prompt_len; }
  int32_t uncomputed() const { return static_cast<int32_t>(tokens.size()) - num_computed; }
};

}  // namespace tokenfab

#endif  // TOKENFAB_WORKER_ENGINE_SEQUENCE_H_
