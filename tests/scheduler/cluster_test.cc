// The routing policy: KV-aware decode choice that still spreads a shared
// prefix, the conditional disaggregation decision and its reasons, worker
// refusal, expiry, roles and draining.
#include "scheduler/cluster.h"

#include <deque>

#include "common/block_hash.h"
#include "common/strings.h"
#include "gtest/gtest.h"

namespace tokenfab {
namespace {

using internal::v1::WorkerRole;
using Clock = Cluster::Clock;

internal::v1::WorkerHello Hello(const std::string& id, WorkerRole role) {
  internal::v1::WorkerHello h;
  h.set_worker_id(id);
  h.set_address(id + ":1");
  h.set_role(role);
  h.set_model_fingerprint("m");
  h.set_kv_wire_version(1);
  h.set_max_num_seqs(64);
  h.set_max_queue(256);
  return h;
}

struct Fixture {
  explicit Fixture(RoutingOptions o = {}) : cluster(o, "m", 1) {}
  uint64_t Add(const std::string& id, WorkerRole role) {
    auto s = cluster.Attach(Hello(id, role), Clock::now());
    EXPECT_TRUE(s.ok()) << s.status();
    sessions[id] = *s;
    return *s;
  }
  // The worker now caches `hashes` (as its KV events would say).
  void Stored(const std::string& id, const std::vector<uint64_t>& hashes) {
    internal::v1::KvEventBatch batch;
    internal::v1::KvEvent* e = batch.add_events();
    e->set_kind(internal::v1::KvEvent::STORED);
    for (uint64_t h : hashes) e->add_block_hashes(h);
    cluster.ApplyKvEvents(id, sessions[id], batch, Clock::now());
  }
  Cluster cluster;
  std::map<std::string, uint64_t> sessions;
};

std::vector<int32_t> Tokens(int n, int salt) {
  std::vector<int32_t> t(n);
  for (int i = 0; i < n; ++i) t[i] = (i * 7 + salt * 13) % 1000;
  return t;
}

RouteRequest Req(const std::vector<uint64_t>& hashes, int32_t prompt_tokens,
                 int32_t max_tokens = 16) {
  return {hashes, prompt_tokens, max_tokens, {}};
}

TEST(ClusterTest, ASharedSystemPromptDoesNotPileOnOneWorker) {
  Fixture f;
  for (int i = 0; i < 4; ++i) f.Add(StrCat("w", i), internal::v1::WORKER_ROLE_BOTH);
  const std::vector<int32_t> system = Tokens(512, 1);
  std::map<std::string, int> count;
  std::deque<RouteDecision> active;
  for (int r = 0; r < 200; ++r) {
    std::vector<int32_t> prompt = system;
    for (int32_t t : Tokens(40, 100 + r)) prompt.push_back(t);
    const std::vector<uint64_t> hashes = BlockHashes(prompt, 16);
    auto d = f.cluster.Route(Req(hashes, static_cast<int32_t>(prompt.size())));
    ASSERT_TRUE(d.ok()) << d.status();
    ++count[d->decode_worker];
    f.Stored(d->decode_worker, hashes);
    active.push_back(*d);
    if (active.size() > 16) {  // a steady 16 requests in flight
      f.cluster.Release(active.front());
      active.pop_front();
    }
  }
  for (const auto& [w, n] : count) {
    EXPECT_LE(n, 80) << w << " got " << n << " of 200 requests";
    EXPECT_GT(n, 0) << w;
  }
  EXPECT_EQ(count.size(), 4u);
}

TEST(ClusterTest, PrefersTheWorkerHoldingThePrefixWhenLoadsAreEqual) {
  Fixture f;
  f.Add("a", internal::v1::WORKER_ROLE_BOTH);
  f.Add("b", internal::v1::WORKER_ROLE_BOTH);
  const std::vector<uint64_t> hashes = BlockHashes(Tokens(320, 5), 16);
  f.Stored("b", hashes);
  for (int i = 0; i < 5; ++i) {
    auto d = f.cluster.Route(Req(hashes, 320));
    ASSERT_TRUE(d.ok());
    EXPECT_EQ(d->decode_worker, "b");
    EXPECT_EQ(d->prefix_hit_blocks, 20);
    f.cluster.Release(*d);
  }
}

TEST(ClusterTest, CountsTheKvOverlapOfChosenWorkersAndShowsTheirLoads) {
  Fixture f;
  f.Add("a", internal::v1::WORKER_ROLE_BOTH);
  const std::vector<uint64_t> cached = BlockHashes(Tokens(160, 1), 16);  // 10 blocks
  f.Stored("a", std::vector<uint64_t>(cached.begin(), cached.begin() + 5));
  auto half = f.cluster.Route(Req(cached, 160, 32));  // 5 of 10 blocks cached: 0.5
  ASSERT_TRUE(half.ok());
  auto none = f.cluster.Route(Req(BlockHashes(Tokens(64, 9), 16), 64));  // 0 of 4
  ASSERT_TRUE(none.ok());
  ASSERT_TRUE(f.cluster.Route(Req({}, 8)).ok());  // no full block: not counted
  const Cluster::OverlapStats o = f.cluster.Overlap();
  EXPECT_EQ(o.prompt_blocks, 14);
  EXPECT_EQ(o.hit_blocks, 5);
  EXPECT_DOUBLE_EQ(o.sum, 0.5);
  EXPECT_EQ(o.counts[0], 1u);  // le 0
  EXPECT_EQ(o.counts[3], 1u);  // (0.25, 0.5]
  uint64_t total = 0;
  for (uint64_t c : o.counts) total += c;
  EXPECT_EQ(total, 2u);

  const std::vector<Cluster::WorkerLoad> loads = f.cluster.Loads();
  ASSERT_EQ(loads.size(), 1u);
  EXPECT_EQ(loads[0].id, "a");
  EXPECT_EQ(loads[0].role, "both");
  EXPECT_EQ(loads[0].active_requests, 3);
  EXPECT_EQ(loads[0].active_blocks, (160 + 32) / 16 + (64 + 16) / 16 + 2);
  f.cluster.Release(*half);
  EXPECT_EQ(f.cluster.Loads()[0].active_requests, 2);
}

TEST(ClusterTest, DisaggregatesOnlyAboveTheThresholdWithAPrefillWorker) {
  RoutingOptions o;
  o.disagg_threshold = 100;
  o.max_prefill_queue_tokens = 1000;
  Fixture f(o);
  f.Add("d", internal::v1::WORKER_ROLE_DECODE);
  auto short_prompt = f.cluster.Route(Req(BlockHashes(Tokens(64, 1), 16), 64));
  ASSERT_TRUE(short_prompt.ok());
  EXPECT_FALSE(short_prompt->remote_prefill);
  EXPECT_EQ(short_prompt->reason, "below_threshold");
  auto no_prefill = f.cluster.Route(Req(BlockHashes(Tokens(300, 2), 16), 300));
  EXPECT_EQ(no_prefill->reason, "no_prefill_worker");

  f.Add("p", internal::v1::WORKER_ROLE_PREFILL);
  auto remote = f.cluster.Route(Req(BlockHashes(Tokens(300, 3), 16), 300));
  ASSERT_TRUE(remote.ok());
  EXPECT_EQ(remote->decode_worker, "d");  // a prefill worker never decodes
  EXPECT_TRUE(remote->remote_prefill);
  EXPECT_EQ(remote->prefill_worker, "p");
  EXPECT_EQ(remote->reason, "above_threshold");

  // 300 + 800 queued on the pool: the next long prompt prefills locally.
  auto big = f.cluster.Route(Req(BlockHashes(Tokens(800, 4), 16), 800));
  EXPECT_TRUE(big->remote_prefill);
  auto busy = f.cluster.Route(Req(BlockHashes(Tokens(300, 5), 16), 300));
  EXPECT_FALSE(busy->remote_prefill);
  EXPECT_EQ(busy->reason, "prefill_busy");
  f.cluster.PrefillDone(*remote);
  f.cluster.PrefillDone(*big);
  auto again = f.cluster.Route(Req(BlockHashes(Tokens(300, 6), 16), 300));
  EXPECT_TRUE(again->remote_prefill);

  // The decode worker's prefix hit counts against the threshold.
  const std::vector<uint64_t> cached = BlockHashes(Tokens(320, 7), 16);
  f.Stored("d", cached);
  auto hit = f.cluster.Route(Req(cached, 330));
  EXPECT_EQ(hit->prefix_hit_blocks, 20);
  EXPECT_EQ(hit->reason, "below_threshold");

  const auto decisions = f.cluster.Decisions();
  EXPECT_EQ(decisions.at({"remote", "above_threshold"}), 3);
  EXPECT_EQ(decisions.at({"local", "prefill_busy"}), 1);
  EXPECT_EQ(decisions.at({"local", "below_threshold"}), 2);

  RoutingOptions off = o;
  off.disagg_threshold = 0;
  Fixture g(off);
  g.Add("d", internal::v1::WORKER_ROLE_DECODE);
  g.Add("p", internal::v1::WORKER_ROLE_PREFILL);
  EXPECT_EQ(g.cluster.Route(Req(BlockHashes(Tokens(3000, 1), 16), 3000))->reason, "disabled");
}

// KV moves only between workers of one transport: a GPU decode worker on
// nccl never gets its prompt prefilled by a tcp worker, and the reverse.
TEST(ClusterTest, PairsPrefillAndDecodeWorkersOfOneTransportOnly) {
  RoutingOptions o;
  o.disagg_threshold = 100;
  Fixture f(o);
  internal::v1::WorkerHello d = Hello("d", internal::v1::WORKER_ROLE_DECODE);
  d.set_kv_transport("nccl");
  ASSERT_TRUE(f.cluster.Attach(d, Clock::now()).ok());
  internal::v1::WorkerHello p = Hello("p", internal::v1::WORKER_ROLE_PREFILL);
  p.set_kv_transport("tcp");
  ASSERT_TRUE(f.cluster.Attach(p, Clock::now()).ok());
  auto none = f.cluster.Route(Req(BlockHashes(Tokens(300, 1), 16), 300));
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->remote_prefill);
  EXPECT_EQ(none->reason, "no_prefill_worker");

  p.set_kv_transport("nccl");
  ASSERT_TRUE(f.cluster.Attach(p, Clock::now()).ok());
  auto remote = f.cluster.Route(Req(BlockHashes(Tokens(300, 2), 16), 300));
  ASSERT_TRUE(remote.ok());
  EXPECT_TRUE(remote->remote_prefill);
  EXPECT_EQ(remote->prefill_worker, "p");
}

TEST(ClusterTest, RefusesAnotherModelOrWireVersion) {
  Fixture f;
  internal::v1::WorkerHello h = Hello("x", internal::v1::WORKER_ROLE_BOTH);
  h.set_model_fingerprint("other");
  auto s = f.cluster.Attach(h, Clock::now());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.status().message().find("another model"), std::string::npos);
  h = Hello("x", internal::v1::WORKER_ROLE_BOTH);
  h.set_kv_wire_version(2);
  EXPECT_NE(f.cluster.Attach(h, Clock::now()).status().message().find("KV wire version 2"),
            std::string::npos);
  EXPECT_EQ(f.cluster.Route(Req({}, 10)).status().code(), absl::StatusCode::kUnavailable);
}

TEST(ClusterTest, SilentWorkersExpireAndReattachWithASnapshot) {
  Fixture f;
  const auto t0 = Clock::now();
  ASSERT_TRUE(f.cluster.Attach(Hello("a", internal::v1::WORKER_ROLE_BOTH), t0).ok());
  auto b = f.cluster.Attach(Hello("b", internal::v1::WORKER_ROLE_BOTH), t0);
  // The default limit is 1.5 s without a report.
  EXPECT_TRUE(f.cluster.ReportLoad("b", *b, {}, t0 + std::chrono::milliseconds(1000)));
  EXPECT_TRUE(f.cluster.Expire(t0 + std::chrono::milliseconds(1400)).empty());
  EXPECT_EQ(f.cluster.Expire(t0 + std::chrono::milliseconds(1600)), std::vector<std::string>{"a"});
  // An expired worker's reports are refused: it has to attach again.
  EXPECT_FALSE(f.cluster.ReportLoad("a", 1, {}, t0 + std::chrono::milliseconds(1700)));
  EXPECT_EQ(f.cluster.Workers().size(), 1u);

  internal::v1::WorkerHello again = Hello("a", internal::v1::WORKER_ROLE_BOTH);
  const std::vector<uint64_t> hashes = BlockHashes(Tokens(64, 9), 16);
  for (uint64_t h : hashes) again.add_cached_block_hashes(h);
  ASSERT_TRUE(f.cluster.Attach(again, Clock::now()).ok());
  auto d = f.cluster.Route(Req(hashes, 70));
  EXPECT_EQ(d->decode_worker, "a");
  EXPECT_EQ(d->prefix_hit_blocks, 4);
}

TEST(ClusterTest, RoleChangesAndDrainingSteerNewRequestsOnly) {
  Fixture f;
  f.Add("a", internal::v1::WORKER_ROLE_BOTH);
  f.Add("b", internal::v1::WORKER_ROLE_BOTH);
  auto first = f.cluster.Route(Req({}, 10));
  ASSERT_TRUE(f.cluster.SetRole(first->decode_worker, internal::v1::WORKER_ROLE_PREFILL).ok());
  const std::string other = first->decode_worker == "a" ? "b" : "a";
  for (int i = 0; i < 4; ++i) EXPECT_EQ(f.cluster.Route(Req({}, 10))->decode_worker, other);
  EXPECT_EQ(f.cluster.TakeOrders(first->decode_worker, f.sessions[first->decode_worker]).role,
            internal::v1::WORKER_ROLE_PREFILL);
  EXPECT_EQ(f.cluster.WorkersByRole()["prefill"], 1);
  ASSERT_TRUE(f.cluster.SetDraining(other).ok());
  EXPECT_TRUE(f.cluster.TakeOrders(other, f.sessions[other]).drain);
  EXPECT_EQ(f.cluster.Route(Req({}, 10)).status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(f.cluster.SetRole("nobody", internal::v1::WORKER_ROLE_DECODE).code(),
            absl::StatusCode::kNotFound);
}

// A worker attached to several routers reports its role: a role another
// router set is taken, but not over this router's own order while that is
// on its way (a report sent before the order arrived still has the old one).
TEST(ClusterTest, ReportedRoleIsTakenExceptOverAFreshOrder) {
  Fixture f;
  f.Add("a", internal::v1::WORKER_ROLE_BOTH);
  internal::v1::WorkerLoadReport load;
  const auto role_of_a = [&] { return f.cluster.Workers()[0].role(); };
  load.set_role(internal::v1::WORKER_ROLE_PREFILL);  // set by another router
  ASSERT_TRUE(f.cluster.ReportLoad("a", f.sessions["a"], load, Clock::now()));
  EXPECT_EQ(role_of_a(), internal::v1::WORKER_ROLE_PREFILL);
  EXPECT_EQ(f.cluster.WorkersByRole()["prefill"], 1);

  ASSERT_TRUE(f.cluster.SetRole("a", internal::v1::WORKER_ROLE_DECODE).ok());
  ASSERT_TRUE(f.cluster.ReportLoad("a", f.sessions["a"], load, Clock::now()));  // stale
  EXPECT_EQ(role_of_a(), internal::v1::WORKER_ROLE_DECODE);
  // Later, another router's order wins.
  ASSERT_TRUE(f.cluster.ReportLoad("a", f.sessions["a"], load, Clock::now() + std::chrono::seconds(3)));
  EXPECT_EQ(role_of_a(), internal::v1::WORKER_ROLE_PREFILL);
  // Reports from workers that predate the field carry no role.
  load.clear_role();
  ASSERT_TRUE(f.cluster.ReportLoad("a", f.sessions["a"], load, Clock::now() + std::chrono::seconds(4)));
  EXPECT_EQ(role_of_a(), internal::v1::WORKER_ROLE_PREFILL);
}

TEST(ClusterTest, StandbyWorkersGetNoNewRequestsAndComeBackWithoutADrainOrder) {
  Fixture f;
  f.Add("a", internal::v1::WORKER_ROLE_BOTH);
  f.Add("b", internal::v1::WORKER_ROLE_BOTH);
  auto held = f.cluster.Route(Req({}, 10));  // in flight on one of them
  ASSERT_TRUE(held.ok());
  ASSERT_TRUE(f.cluster.SetStandby(held->decode_worker, true).ok());
  const std::string other = held->decode_worker == "a" ? "b" : "a";
  for (int i = 0; i < 4; ++i) EXPECT_EQ(f.cluster.Route(Req({}, 10))->decode_worker, other);
  EXPECT_FALSE(f.cluster.TakeOrders(held->decode_worker, f.sessions[held->decode_worker]).drain);
  const std::vector<FleetMember> fleet = f.cluster.Fleet();
  ASSERT_EQ(fleet.size(), 2u);
  for (const FleetMember& m : fleet) {
    EXPECT_EQ(m.standby, m.id == held->decode_worker);
    if (m.id == held->decode_worker) EXPECT_EQ(m.active_requests, 1);
  }
  ASSERT_TRUE(f.cluster.SetStandby(other, true).ok());
  EXPECT_FALSE(f.cluster.HasDecodeWorker());
  ASSERT_TRUE(f.cluster.SetStandby(held->decode_worker, false).ok());
  EXPECT_EQ(f.cluster.Route(Req({}, 10))->decode_worker, held->decode_worker);
  EXPECT_EQ(f.cluster.SetStandby("nobody", true).code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace tokenfab
