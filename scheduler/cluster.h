// The router's picture of its workers and the routing policy over it.
//
// Workers attach with a hello (refused if their model or KV wire version
// differ from the router's), then report load and KV events; a worker that
// has not reported within `liveness` is expired. For each request the
// cluster picks:
//  - a decode worker (role decode or both) by cost: the prompt blocks it
//    would still have to compute after its prefix hits, plus its active
//    blocks, plus `request_weight` times its active requests; lowest wins,
//    ties go to the fewest active requests, then at random;
//  - whether to prefill remotely: only when the tokens the decode worker
//    would compute exceed `disagg_threshold` and the prefill pool's queued
//    tokens are under `max_prefill_queue_tokens`; the prefill worker (role
//    prefill or both, not the decode worker) is the one with the longest
//    prefix hit, then the fewest queued tokens.
// Active requests, blocks and queued prefill tokens are counted here as
// requests are routed and finish, so bursts spread before the next load
// report; reported figures are used when they are higher.
//
// Thread-safe.
#ifndef TOKENFAB_SCHEDULER_CLUSTER_H_
#define TOKENFAB_SCHEDULER_CLUSTER_H_

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "scheduler/fleet_plan.h"
#include "scheduler/kv_index.h"
#include "tokenfab/internal/v1/control.pb.h"

namespace tokenfab {

struct RoutingOptions {
  int32_t block_size = 16;
  int32_t disagg_threshold = 512;            // tokens; 0 turns disaggregation off
  int64_t max_prefill_queue_tokens = 16384;  // the prefill pool's queued tokens, summed
  float request_weight = 4.0f;               // cost of one active request, in blocks
  std::chrono::milliseconds liveness{1500};  // reports come every 200 ms
};

// Where one request goes. `session`s tie the accounting to one attachment
// of a worker (a restarted worker starts from zero).
struct RouteDecision {
  std::string decode_worker;
  std::string decode_address;
  uint64_t decode_session = 0;
  bool remote_prefill = false;
  std::string prefill_worker;
  std::string prefill_address;
  uint64_t prefill_session = 0;
  std::string reason;             // label of tokenfab_router_prefill_decisions_total
  int32_t prefix_hit_blocks = 0;  // on the decode worker
  int32_t prompt_tokens = 0;
  int32_t blocks = 0;  // what the request holds on the decode worker (prompt + output)
};

struct RouteRequest {
  std::span<const uint64_t> block_hashes;  // the prompt's full blocks
  int32_t prompt_tokens = 0;
  int32_t max_tokens = 0;
  absl::flat_hash_set<std::string> exclude;  // workers that already failed this request
};

class Cluster {
 public:
  using Clock = std::chrono::steady_clock;

  Cluster(RoutingOptions options, std::string model_fingerprint, int32_t kv_wire_version);

  // Registers a worker (replacing an earlier attachment with its id) and
  // returns its session. FailedPrecondition names what differs.
  absl::StatusOr<uint64_t> Attach(const internal::v1::WorkerHello& hello, Clock::time_point now);
  // Forgets a worker if `session` is still its current attachment.
  void Detach(const std::string& worker_id, uint64_t session);
  // False when `session` is no longer the worker's attachment (it expired):
  // the worker should attach again.
  bool ReportLoad(const std::string& worker_id, uint64_t session,
                  const internal::v1::WorkerLoadReport& load, Clock::time_point now);
  bool ApplyKvEvents(const std::string& worker_id, uint64_t session,
                     const internal::v1::KvEventBatch& events, Clock::time_point now);
  // Workers silent for longer than the liveness limit: removed and returned.
  std::vector<std::string> Expire(Clock::time_point now);

  // Picks the workers for a request and counts it as active on them.
  // Unavailable when no decode-capable worker is attached, ResourceExhausted
  // when every one of them is full (running + queue limit).
  absl::StatusOr<RouteDecision> Route(const RouteRequest& request);
  // The request's prefill is over (its first token came, or it failed).
  void PrefillDone(const RouteDecision& decision);
  // The request left its decode worker (finished, failed or migrated).
  void Release(const RouteDecision& decision);

  absl::Status SetRole(const std::string& worker_id, internal::v1::WorkerRole role);
  absl::Status SetDraining(const std::string& worker_id);
  // A worker on standby gets no new requests and keeps the ones it has; the
  // planner parks surplus workers so and brings them back. Unlike a drain,
  // the worker is not told to exit.
  absl::Status SetStandby(const std::string& worker_id, bool standby);
  // The attached workers that are not draining, as the planner places them.
  std::vector<FleetMember> Fleet() const;
  // The role and draining orders not yet sent to a worker's stream.
  struct Orders {
    std::optional<internal::v1::WorkerRole> role;
    bool drain = false;
  };
  Orders TakeOrders(const std::string& worker_id, uint64_t session);

  std::vector<internal::v1::WorkerInfo> Workers() const;
  // Whether a worker that can decode (and is not draining) is attached.
  bool HasDecodeWorker() const;
  // Attached workers by role name ("prefill", "decode", "both").
  std::map<std::string, int32_t> WorkersByRole() const;
  // Decisions so far, by (decision, reason).
  std::map<std::pair<std::string, std::string>, int64_t> Decisions() const;
  // KV bytes the workers have received from prefill workers, summed over
  // their reports (a worker's restart is a counter reset, as in Prometheus).
  int64_t KvBytesMoved() const;

  // Each attached worker as routing sees it (the higher of what was routed
  // and what it reported), for the router's per-worker gauges.
  struct WorkerLoad {
    std::string id;
    std::string role;
    bool standby = false;
    int64_t active_requests = 0;
    int64_t active_blocks = 0;
    int64_t queued_prefill_tokens = 0;
  };
  std::vector<WorkerLoad> Loads() const;

  // KV overlap of the chosen decode workers: for every routed prompt with a
  // full block, the share of its blocks already cached there. Per-bucket
  // counts for kOverlapBounds, then the count above the last bound (none).
  static constexpr std::array<double, 8> kOverlapBounds = {0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1};
  struct OverlapStats {
    std::array<uint64_t, kOverlapBounds.size() + 1> counts{};
    double sum = 0;
    int64_t hit_blocks = 0;
    int64_t prompt_blocks = 0;
  };
  OverlapStats Overlap() const;

 private:
  struct Worker {
    internal::v1::WorkerHello hello;
    uint64_t session = 0;
    internal::v1::WorkerRole role = internal::v1::WORKER_ROLE_BOTH;
    // After this router sets the role, reports still carrying the old one
    // (sent before the order arrived) are ignored until this time.
    Clock::time_point role_ordered_until;
    bool draining = false;
    bool standby = false;
    internal::v1::WorkerLoadReport load;
    Clock::time_point last_seen;
    int32_t active_requests = 0;
    int64_t active_blocks = 0;
    int64_t queued_prefill_tokens = 0;
    Orders orders;
  };

  Worker* Find(const std::string& id, uint64_t session) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Remove(const std::string& id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const RoutingOptions options_;
  const std::string model_fingerprint_;
  const int32_t kv_wire_version_;

  mutable absl::Mutex mu_;
  std::map<std::string, Worker> workers_ ABSL_GUARDED_BY(mu_);
  KvIndex index_ ABSL_GUARDED_BY(mu_);
  uint64_t next_session_ ABSL_GUARDED_BY(mu_) = 1;
  std::mt19937_64 rng_ ABSL_GUARDED_BY(mu_){std::random_device{}()};
  std::map<std::pair<std::string, std::string>, int64_t> decisions_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, int64_t> last_kv_received_ ABSL_GUARDED_BY(mu_);
  int64_t kv_bytes_moved_ ABSL_GUARDED_BY(mu_) = 0;
  OverlapStats overlap_ ABSL_GUARDED_BY(mu_);
};

const char* RoleName(internal::v1::WorkerRole role);

}  // namespace tokenfab

#endif  // TOKENFAB_SCHEDULER_CLUSTER_H_
