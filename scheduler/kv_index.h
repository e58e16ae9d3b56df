// The router's KV index: for each block hash, the workers whose prefix cache
// holds it. Fed by the workers' stored/removed events and rebuilt from a
// worker's snapshot when it (re)attaches; asked, per request, how many
// leading blocks of the prompt each worker already has.
//
// Not thread-safe: the Cluster that owns it serializes access.
#ifndef TOKENFAB_SCHEDULER_KV_INDEX_H_
#define TOKENFAB_SCHEDULER_KV_INDEX_H_

#include <cstdint>
#include <span>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "tokenfab/internal/v1/worker.pb.h"

namespace tokenfab {

class KvIndex {
 public:
  void Apply(const std::string& worker, const internal::v1::KvEvent& event);
  // Forgets what `worker` held and records `hashes` instead.
  void Replace(const std::string& worker, std::span<const uint64_t> hashes);
  void RemoveWorker(const std::string& worker);

  // For every worker holding at least the first block: how many leading
  // blocks of `hashes` (a prompt's chained hashes, in order) it holds.
  absl::flat_hash_map<std::string, int32_t> PrefixMatches(std::span<const uint64_t> hashes) const;

  int64_t BlocksOf(const std::string& worker) const;

 private:
  void Add(const std::string& worker, uint64_t hash);
  void Remove(const std::string& worker, uint64_t hash);

  absl::flat_hash_map<uint64_t, absl::flat_hash_set<std::string>> holders_;
  absl::flat_hash_map<std::string, absl::flat_hash_set<uint64_t>> by_worker_;
};

}  // namespace tokenfab

#endif  // TOKENFAB_SCHEDULER_KV_INDEX_H_
