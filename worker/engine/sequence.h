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
#include "worker/transport/kv_transport.h"

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

  // Disaggregated prefill, decode side: the blocks are allocated and another
  // worker computes the KV of positions [num_computed, remote_end); the
  // sequence is not scheduled until it arrives or the attempt fails (then it
  // is computed here). A preemption bumps the generation, so KV that arrives
  // for an older allocation is dropped.
  bool awaiting_kv = false;
  bool remote_tried = false;
  int32_t remote_end = 0;
  uint64_t remote_generation = 0;

  // Disaggregated prefill, prefill side: the KV of positions
  // [export_sent, tokens.size()) goes to this stream as it is computed.
  std::shared_ptr<KvSendStream> kv_export;
  int32_t export_sent = 0;

  bool admitted_before = false;
  int32_t cached_tokens = 0;  // prompt tokens found in the prefix cache at first admission
  int32_t preemptions = 0;
  bool cancelled = false;

  int32_t generated() const { return static_cast<int32_t>(tokens.size()) - prompt_len; }
  int32_t uncomputed() const { return static_cast<int32_t>(tokens.size()) - num_computed; }
};

}  // namespace tokenfab

#endif  // TOKENFAB_WORKER_ENGINE_SEQUENCE_H_
