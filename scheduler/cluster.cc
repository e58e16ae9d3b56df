#include "scheduler/cluster.h"

#include <algorithm>
#include <limits>

#include "common/strings.h"

namespace tokenfab {

using internal::v1::WorkerRole;

const char* RoleName(WorkerRole role) {
  switch (role) {
    case internal::v1::WORKER_ROLE_PREFILL:
      return "prefill";
    case internal::v1::WORKER_ROLE_DECODE:
      return "decode";
    default:
      return "both";
  }
}

namespace {

bool Decodes(WorkerRole r) { return r != internal::v1::WORKER_ROLE_PREFILL; }
bool Prefills(WorkerRole r) { return r != internal::v1::WORKER_ROLE_DECODE; }

// How long a role this router ordered outranks the role a worker reports:
// long enough for the order to arrive and be confirmed by the next report;
// after it, a role that another router ordered later is taken.
constexpr auto kRoleOrderGrace = std::chrono::seconds(2);

}  // namespace

Cluster::Cluster(RoutingOptions options, std::string model_fingerprint, int32_t kv_wire_version)
    : options_(options),
      model_fingerprint_(std::move(model_fingerprint)),
      kv_wire_version_(kv_wire_version) {}

absl::StatusOr<uint64_t> Cluster::Attach(const internal::v1::WorkerHello& hello,
                                         Clock::time_point now) {
  if (hello.worker_id().empty()) return absl::InvalidArgumentError("the worker sent no id");
  if (hello.address().empty()) return absl::InvalidArgumentError("the worker sent no address");
  if (hello.model_fingerprint() != model_fingerprint_) {
    return absl::FailedPreconditionError(
        StrCat("worker ", hello.worker_id(), " serves another model (fingerprint ",
               hello.model_fingerprint(), ", the router's is ", model_fingerprint_, ")"));
  }
  if (hello.kv_wire_version() != kv_wire_version_) {
    return absl::FailedPreconditionError(StrCat("worker ", hello.worker_id(),
                                                " speaks KV wire version ", hello.kv_wire_version(),
                                                ", the router expects ", kv_wire_version_));
  }
  absl::MutexLock lock(&mu_);
  Remove(hello.worker_id());
  Worker& w = workers_[hello.worker_id()];
  w.hello = hello;
  w.hello.clear_cached_block_hashes();
  w.session = next_session_++;
  w.role = hello.role() == internal::v1::WORKER_ROLE_UNSPECIFIED ? internal::v1::WORKER_ROLE_BOTH
                                                                 : hello.role();
  w.last_seen = now;
  index_.Replace(hello.worker_id(), std::vector<uint64_t>(hello.cached_block_hashes().begin(),
                                                          hello.cached_block_hashes().end()));
  return w.session;
}

void Cluster::Remove(const std::string& id) {
  workers_.erase(id);
  index_.RemoveWorker(id);
}

Cluster::Worker* Cluster::Find(const std::string& id, uint64_t session) {
  auto it = workers_.find(id);
  if (it == workers_.end() || it->second.session != session) return nullptr;
  return &it->second;
}

void Cluster::Detach(const std::string& id, uint64_t session) {
  absl::MutexLock lock(&mu_);
  if (Find(id, session) != nullptr) Remove(id);
}

bool Cluster::ReportLoad(const std::string& id, uint64_t session,
                         const internal::v1::WorkerLoadReport& load, Clock::time_point now) {
  absl::MutexLock lock(&mu_);
  Worker* w = Find(id, session);
  if (w == nullptr) return false;
  w->load = load;
  w->last_seen = now;
  // Another router may have changed the role.
  const WorkerRole reported = load.role();
  if (reported != internal::v1::WORKER_ROLE_UNSPECIFIED && internal::v1::WorkerRole_IsValid(reported) &&
      reported != w->role && now >= w->role_ordered_until) {
    w->role = reported;
  }
  int64_t& last = last_kv_received_[id];
  kv_bytes_moved_ +=
      load.kv_bytes_received() >= last ? load.kv_bytes_received() - last : load.kv_bytes_received();
  last = load.kv_bytes_received();
  if (load.draining()) w->draining = true;
  return true;
}

bool Cluster::ApplyKvEvents(const std::string& id, uint64_t session,
                            const internal::v1::KvEventBatch& events, Clock::time_point now) {
  absl::MutexLock lock(&mu_);
  Worker* w = Find(id, session);
  if (w == nullptr) return false;
  w->last_seen = now;
  for (const internal::v1::KvEvent& e : events.events()) index_.Apply(id, e);
  return true;
}

std::vector<std::string> Cluster::Expire(Clock::time_point now) {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> gone;
  for (const auto& [id, w] : workers_) {
    if (now - w.last_seen > options_.liveness) gone.push_back(id);
  }
  for (const std::string& id : gone) Remove(id);
  return gone;
}

absl::StatusOr<RouteDecision> Cluster::Route(const RouteRequest& r) {
  const int32_t bs = options_.block_size;
  const int32_t prompt_blocks = (r.prompt_tokens + bs - 1) / bs;
  absl::MutexLock lock(&mu_);
  const absl::flat_hash_map<std::string, int32_t> hits = index_.PrefixMatches(r.block_hashes);
  auto hit_of = [&](const std::string& id) {
    auto it = hits.find(id);
    return it == hits.end() ? 0 : it->second;
  };

  // Decode worker: lowest cost, then fewest active requests, then random.
  struct Candidate {
    Worker* w;
    double cost;
  };
  std::vector<Candidate> best;
  bool any_decoder = false;
  for (auto& [id, w] : workers_) {
    if (!Decodes(w.role) || w.draining || w.standby || r.exclude.contains(id)) continue;
    any_decoder = true;
    // From the network: added in 64 bits; a negative figure counts as none.
    const int64_t capacity =
        int64_t{std::max(0, w.hello.max_num_seqs())} + std::max(0, w.hello.max_queue());
    const int64_t busy =
        std::max<int64_t>(w.active_requests, int64_t{w.load.running()} + w.load.waiting());
    if (capacity > 0 && busy >= capacity) {
      continue;
    }
    const double active_blocks =
        static_cast<double>(std::max<int64_t>(w.active_blocks, w.load.kv_blocks_used()));
    const double cost =
        (prompt_blocks - hit_of(id)) + active_blocks + options_.request_weight * w.active_requests;
    if (best.empty() || cost < best[0].cost ||
        (cost == best[0].cost && w.active_requests < best[0].w->active_requests)) {
      best.assign(1, {&w, cost});
    } else if (cost == best[0].cost && w.active_requests == best[0].w->active_requests) {
      best.push_back({&w, cost});
    }
  }
  if (best.empty()) {
    if (!any_decoder) return absl::UnavailableError("no decode worker is attached to the router");
    return absl::ResourceExhaustedError("every decode worker's queue is full");
  }
  Worker* d = best[best.size() == 1 ? 0 : rng_() % best.size()].w;

  RouteDecision out;
  out.decode_worker = d->hello.worker_id();
  out.decode_address = d->hello.address();
  out.decode_session = d->session;
  out.prefix_hit_blocks = hit_of(out.decode_worker);
  out.prompt_tokens = r.prompt_tokens;
  out.blocks = (r.prompt_tokens + r.max_tokens + bs - 1) / bs;
  // The decode worker always computes the prompt's last token itself.
  const int32_t to_compute = std::max(0, r.prompt_tokens - out.prefix_hit_blocks * bs);

  Worker* p = nullptr;
  if (options_.disagg_threshold <= 0) {
    out.reason = "disabled";
  } else if (to_compute <= options_.disagg_threshold) {
    out.reason = "below_threshold";
  } else {
    int64_t pool_queued = 0;
    int32_t p_hit = -1;
    int64_t p_queued = 0;
    for (auto& [id, w] : workers_) {
      // A prefill worker writes KV only over the decode worker's own transport.
      if (!Prefills(w.role) || w.draining || w.standby || &w == d || r.exclude.contains(id) ||
          w.hello.kv_transport() != d->hello.kv_transport()) {
        continue;
      }
      const int64_t queued = std::max(w.queued_prefill_tokens, w.load.pending_prefill_tokens());
      pool_queued += queued;
      const int32_t hit = hit_of(id);
      if (p == nullptr || hit > p_hit || (hit == p_hit && queued < p_queued)) {
        p = &w;
        p_hit = hit;
        p_queued = queued;
      }
    }
    if (p == nullptr) {
      out.reason = "no_prefill_worker";
    } else if (pool_queued >= options_.max_prefill_queue_tokens) {
      out.reason = "prefill_busy";
      p = nullptr;
    } else {
      out.reason = "above_threshold";
    }
  }
  if (p != nullptr) {
    out.remote_prefill = true;
    out.prefill_worker = p->hello.worker_id();
    out.prefill_address = p->hello.address();
    out.prefill_session = p->session;
    p->queued_prefill_tokens += to_compute;
  }
  ++d->active_requests;
  d->active_blocks += out.blocks;
  ++decisions_[{out.remote_prefill ? "remote" : "local", out.reason}];
  if (!r.block_hashes.empty()) {
    const double share =
        static_cast<double>(out.prefix_hit_blocks) / static_cast<double>(r.block_hashes.size());
    size_t bucket = 0;
    while (bucket < kOverlapBounds.size() && share > kOverlapBounds[bucket]) ++bucket;
    ++overlap_.counts[bucket];
    overlap_.sum += share;
    overlap_.hit_blocks += out.prefix_hit_blocks;
    overlap_.prompt_blocks += static_cast<int64_t>(r.block_hashes.size());
  }
  return out;
}

void Cluster::PrefillDone(const RouteDecision& decision) {
  if (!decision.remote_prefill) return;
  absl::MutexLock lock(&mu_);
  if (Worker* p = Find(decision.prefill_worker, decision.prefill_session)) {
    p->queued_prefill_tokens = std::max<int64_t>(
        0,
        p->queued_prefill_tokens -
            std::max(0, decision.prompt_tokens - decision.prefix_hit_blocks * options_.block_size));
  }
}

void Cluster::Release(const RouteDecision& decision) {
  absl::MutexLock lock(&mu_);
  if (Worker* d = Find(decision.decode_worker, decision.decode_session)) {
    d->active_requests = std::max(0, d->active_requests - 1);
    d->active_blocks = std::max<int64_t>(0, d->active_blocks - decision.blocks);
  }
}

absl::Status Cluster::SetRole(const std::string& id, WorkerRole role) {
  if (role == internal::v1::WORKER_ROLE_UNSPECIFIED || !internal::v1::WorkerRole_IsValid(role)) {
    return absl::InvalidArgumentError("role must be both, prefill or decode");
  }
  absl::MutexLock lock(&mu_);
  auto it = workers_.find(id);
  if (it == workers_.end()) return absl::NotFoundError(StrCat("no worker '", id, "' is attached"));
  it->second.role = role;
  it->second.orders.role = role;
  it->second.role_ordered_until = Clock::now() + kRoleOrderGrace;
  return absl::OkStatus();
}

absl::Status Cluster::SetDraining(const std::string& id) {
  absl::MutexLock lock(&mu_);
  auto it = workers_.find(id);
  if (it == workers_.end()) return absl::NotFoundError(StrCat("no worker '", id, "' is attached"));
  it->second.draining = true;
  it->second.orders.drain = true;
  return absl::OkStatus();
}

absl::Status Cluster::SetStandby(const std::string& id, bool standby) {
  absl::MutexLock lock(&mu_);
  auto it = workers_.find(id);
  if (it == workers_.end()) return absl::NotFoundError(StrCat("no worker '", id, "' is attached"));
  it->second.standby = standby;
  return absl::OkStatus();
}

std::vector<FleetMember> Cluster::Fleet() const {
  absl::MutexLock lock(&mu_);
  std::vector<FleetMember> out;
  for (const auto& [id, w] : workers_) {
    if (w.draining) continue;
    out.push_back({id, w.role, w.standby,
                   std::max<int64_t>(w.active_requests,
                                     int64_t{w.load.running()} + w.load.waiting())});
  }
  return out;
}

Cluster::Orders Cluster::TakeOrders(const std::string& id, uint64_t session) {
  absl::MutexLock lock(&mu_);
  Worker* w = Find(id, session);
  return w == nullptr ? Orders{} : std::exchange(w->orders, Orders{});
}

std::vector<internal::v1::WorkerInfo> Cluster::Workers() const {
  absl::MutexLock lock(&mu_);
  std::vector<internal::v1::WorkerInfo> out;
  for (const auto& [id, w] : workers_) {
    internal::v1::WorkerInfo info;
    info.set_worker_id(id);
    info.set_address(w.hello.address());
    info.set_role(w.role);
    info.set_draining(w.draining);
    info.set_active_requests(w.active_requests);
    *info.mutable_load() = w.load;
    info.set_cached_blocks(index_.BlocksOf(id));
    out.push_back(std::move(info));
  }
  return out;
}

bool Cluster::HasDecodeWorker() const {
  absl::MutexLock lock(&mu_);
  for (const auto& [id, w] : workers_) {
    if (Decodes(w.role) && !w.draining && !w.standby) return true;
  }
  return false;
}

std::map<std::string, int32_t> Cluster::WorkersByRole() const {
  absl::MutexLock lock(&mu_);
  std::map<std::string, int32_t> out{{"both", 0}, {"prefill", 0}, {"decode", 0}};
  for (const auto& [id, w] : workers_) ++out[RoleName(w.role)];
  return out;
}

std::map<std::pair<std::string, std::string>, int64_t> Cluster::Decisions() const {
  absl::MutexLock lock(&mu_);
  return decisions_;
}

int64_t Cluster::KvBytesMoved() const {
  absl::MutexLock lock(&mu_);
  return kv_bytes_moved_;
}

std::vector<Cluster::WorkerLoad> Cluster::Loads() const {
  absl::MutexLock lock(&mu_);
  std::vector<WorkerLoad> out;
  for (const auto& [id, w] : workers_) {
    WorkerLoad l;
    l.id = id;
    l.role = RoleName(w.role);
    l.standby = w.standby;
    l.active_requests =
        std::max<int64_t>(w.active_requests, int64_t{w.load.running()} + w.load.waiting());
    l.active_blocks = std::max<int64_t>(w.active_blocks, w.load.kv_blocks_used());
    l.queued_prefill_tokens = std::max(w.queued_prefill_tokens, w.load.pending_prefill_tokens());
    out.push_back(std::move(l));
  }
  return out;
}

Cluster::OverlapStats Cluster::Overlap() const {
  absl::MutexLock lock(&mu_);
  return overlap_;
}

}  // namespace tokenfab
