// A worker's router list: parsing, resolution, and one RouterSet attached
// to two routers' control services (real gRPC on loopback): both see the
// worker, its KV events and a role either of them set.
#include "server/router_set.h"

#include <algorithm>
#include <atomic>
#include <functional>
#include <memory>

#include "absl/time/clock.h"
#include "common/strings.h"
#include "gtest/gtest.h"
#include "server/control_service.h"

namespace tokenfab {
namespace {

using internal::v1::WorkerRole;

TEST(ParseRouterListTest, AcceptsNamesAddressesAndLists) {
  auto one = ParseRouterList("router:50052");
  ASSERT_TRUE(one.ok()) << one.status();
  ASSERT_EQ(one->size(), 1u);
  EXPECT_EQ((*one)[0].host, "router");
  EXPECT_EQ((*one)[0].port, 50052);

  auto list = ParseRouterList("10.0.0.1:1, [fd00::2]:65535,localhost:7");
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_EQ(list->size(), 3u);
  EXPECT_EQ((*list)[1].host, "fd00::2");
  EXPECT_EQ((*list)[1].port, 65535);
  EXPECT_EQ((*list)[2].host, "localhost");
}

TEST(ParseRouterListTest, RefusesWhatIsNotHostPort) {
  for (const char* bad :
       {"", "router", "router:", ":50052", "router:0", "router:65536", "router:12x", "a:1,,b:2",
        "[::1:5", "::1:5", "[]:5", "a]:1", "[router]:5", "ro uter:5", "http://router:5"}) {
    auto r = ParseRouterList(bad);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << "'" << bad << "'";
    EXPECT_NE(r.status().message().find("--router"), std::string_view::npos) << r.status();
  }
}

TEST(ResolveRouterTest, AddressesAndNames) {
  auto v4 = ResolveRouter({"127.0.0.1", 5});
  ASSERT_TRUE(v4.ok()) << v4.status();
  EXPECT_EQ(*v4, std::vector<std::string>{"127.0.0.1:5"});
  auto v6 = ResolveRouter({"::1", 6});
  ASSERT_TRUE(v6.ok()) << v6.status();
  EXPECT_EQ(*v6, std::vector<std::string>{"[::1]:6"});
  // localhost has 127.0.0.1 and often ::1: one router, attached once.
  auto name = ResolveRouter({"localhost", 7});
  ASSERT_TRUE(name.ok()) << name.status();
  EXPECT_EQ(*name, std::vector<std::string>{"127.0.0.1:7"});
  auto none = ResolveRouter({"no-such-router.invalid", 8});
  EXPECT_EQ(none.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(none.status().message().find("no-such-router.invalid"), std::string_view::npos);
}

// One router's internal port: a Cluster behind the real control service.
struct Router {
  explicit Router(const std::string& fingerprint = "model", const std::string& host = "127.0.0.1",
                  KeySet cluster_key = {})
      : cluster(RoutingOptions{}, fingerprint, 1) {
    control = std::make_unique<ControlService>(&cluster, std::move(cluster_key),
                                               [](const std::string&) {});
    grpc::ServerBuilder builder;
    builder.AddListeningPort(host + ":0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(control.get());
    server = builder.BuildAndStart();
  }
  ~Router() {
    if (server == nullptr) return;
    server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
    server->Wait();
  }
  std::string address() const { return StrCat("127.0.0.1:", port); }
  const internal::v1::WorkerInfo* Find(const std::string& id) {
    workers = cluster.Workers();
    for (const auto& w : workers)
      if (w.worker_id() == id) return &w;
    return nullptr;
  }

  Cluster cluster;
  std::unique_ptr<ControlService> control;
  std::unique_ptr<grpc::Server> server;
  int port = 0;
  std::vector<internal::v1::WorkerInfo> workers;
};

bool WaitFor(const std::function<bool()>& done) {
  for (int i = 0; i < 250; ++i) {
    if (done()) return true;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return done();
}

internal::v1::KvEvent Stored(std::vector<uint64_t> hashes) {
  internal::v1::KvEvent e;
  e.set_kind(internal::v1::KvEvent::STORED);
  for (uint64_t h : hashes) e.add_block_hashes(h);
  return e;
}

internal::v1::WorkerHello Hello() {
  internal::v1::WorkerHello hello;
  hello.set_worker_id("w");
  hello.set_address("127.0.0.1:1");
  hello.set_role(internal::v1::WORKER_ROLE_BOTH);
  hello.set_kv_blocks_total(64);
  hello.set_model_fingerprint("model");
  hello.set_kv_wire_version(1);
  return hello;
}

TEST(RouterSetTest, EveryRouterSeesTheWorkerItsBlocksAndItsRole) {
  Router a, b;
  const internal::v1::WorkerHello hello = Hello();
  std::vector<WorkerRole> roles;
  absl::Mutex mu;
  AttachCallbacks callbacks;
  callbacks.load = [] { return internal::v1::WorkerLoadReport(); };
  callbacks.on_role = [&](WorkerRole r) {
    absl::MutexLock lock(&mu);
    roles.push_back(r);
  };
  callbacks.on_refused = [](absl::Status s) { ADD_FAILURE() << s; };
  RouterSetOptions options;
  options.routers = StrCat(a.address(), ",", b.address());
  options.report_interval = std::chrono::milliseconds(50);
  auto set = RouterSet::Start(options, hello, callbacks);
  ASSERT_TRUE(set.ok()) << set.status();
  std::vector<std::string> both = {a.address(), b.address()};
  std::sort(both.begin(), both.end());
  EXPECT_EQ((*set)->targets(), both);
  ASSERT_TRUE(WaitFor([&] { return (*set)->attached() == 2; }));
  ASSERT_NE(a.Find("w"), nullptr);
  ASSERT_NE(b.Find("w"), nullptr);

  (*set)->OnKvEvents({Stored({11, 12, 13})});
  EXPECT_TRUE(WaitFor([&] { return a.Find("w")->cached_blocks() == 3; }));
  EXPECT_TRUE(WaitFor([&] { return b.Find("w")->cached_blocks() == 3; }));

  // Router a makes it a decode worker; b learns it from the reports.
  ASSERT_TRUE(a.cluster.SetRole("w", internal::v1::WORKER_ROLE_DECODE).ok());
  EXPECT_TRUE(WaitFor([&] { return (*set)->role() == internal::v1::WORKER_ROLE_DECODE; }));
  EXPECT_TRUE(WaitFor([&] { return b.Find("w")->role() == internal::v1::WORKER_ROLE_DECODE; }));
  EXPECT_EQ(a.Find("w")->role(), internal::v1::WORKER_ROLE_DECODE);
  {
    absl::MutexLock lock(&mu);
    EXPECT_EQ(roles, std::vector<WorkerRole>{internal::v1::WORKER_ROLE_DECODE});
  }

  // A router that restarts gets the worker back with its blocks and role.
  b.server->Shutdown(std::chrono::system_clock::now());
  b.server->Wait();
  Cluster fresh(RoutingOptions{}, "model", 1);
  ControlService control(&fresh, KeySet(), [](const std::string&) {});
  grpc::ServerBuilder builder;
  builder.AddListeningPort(b.address(), grpc::InsecureServerCredentials());
  builder.RegisterService(&control);
  b.server = builder.BuildAndStart();
  ASSERT_NE(b.server, nullptr);
  ASSERT_TRUE(WaitFor([&] { return fresh.Workers().size() == 1; }));
  EXPECT_EQ(fresh.Workers()[0].cached_blocks(), 3);
  EXPECT_EQ(fresh.Workers()[0].role(), internal::v1::WORKER_ROLE_DECODE);
  // Welcomed again (the router records the hello before its welcome lands).
  EXPECT_TRUE(WaitFor([&] { return (*set)->attached() == 2; }));
  set->reset();
  b.server->Shutdown(std::chrono::system_clock::now());
  b.server->Wait();
  b.server.reset();  // before `control` goes
}

// One router on every loopback address, named twice: the two sessions
// would replace each other on the router forever; one is kept.
TEST(RouterSetTest, OneRouterReachedByTwoAddressesIsAttachedOnce) {
  Router r("model", "0.0.0.0");
  AttachCallbacks callbacks;
  callbacks.load = [] { return internal::v1::WorkerLoadReport(); };
  callbacks.on_refused = [](absl::Status s) { ADD_FAILURE() << s; };
  RouterSetOptions options;
  options.routers = StrCat("127.0.0.1:", r.port, ",127.0.0.2:", r.port);
  options.report_interval = std::chrono::milliseconds(50);
  options.resolve_interval = std::chrono::milliseconds(100);
  auto set = RouterSet::Start(options, Hello(), callbacks);
  ASSERT_TRUE(set.ok()) << set.status();
  ASSERT_TRUE(WaitFor([&] { return (*set)->targets().size() == 1 && (*set)->attached() == 1; }));
  // Stable: the router keeps one session of the worker, reports flowing.
  ASSERT_TRUE(WaitFor([&] { return r.Find("w") != nullptr; }));
  absl::SleepFor(absl::Milliseconds(600));
  EXPECT_EQ((*set)->attached(), 1);
  EXPECT_EQ((*set)->targets().size(), 1u);
  ASSERT_NE(r.Find("w"), nullptr);
}

// A router that refuses the worker (another model: a rollout half done) is
// left alone while another takes it; only a refusal by every router ends it.
TEST(RouterSetTest, ARefusalEndsTheWorkerOnlyWhenEveryRouterRefuses) {
  Router good, other("another model");
  std::atomic<int> refusals{0};
  AttachCallbacks callbacks;
  callbacks.load = [] { return internal::v1::WorkerLoadReport(); };
  callbacks.on_refused = [&](absl::Status s) {
    EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
    ++refusals;
  };
  RouterSetOptions options;
  options.routers = StrCat(good.address(), ",", other.address());
  options.report_interval = std::chrono::milliseconds(50);
  auto both = RouterSet::Start(options, Hello(), callbacks);
  ASSERT_TRUE(both.ok()) << both.status();
  ASSERT_TRUE(WaitFor([&] { return (*both)->attached() == 1 && good.Find("w") != nullptr; }));
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_EQ(refusals, 0);
  EXPECT_EQ(other.Find("w"), nullptr);
  both->reset();

  options.routers = other.address();
  auto refused = RouterSet::Start(options, Hello(), callbacks);
  ASSERT_TRUE(refused.ok()) << refused.status();
  EXPECT_TRUE(WaitFor([&] { return refusals == 1; }));
}

// A router with a cluster key refuses a worker without it, or with another
// (final: the worker ends, told why), and takes one with any of its keys.
TEST(RouterSetTest, OnlyAWorkerWithTheClusterKeyAttaches) {
  auto keys = KeySet::Parse(
      "# rotating: new first, old still admitted\n"
      "new-key-0123456789abcdef\nold-key-0123456789abcdef\n",
      "test keys");
  ASSERT_TRUE(keys.ok()) << keys.status();
  Router keyed("model", "127.0.0.1", *keys);
  for (const auto& [key, why] : std::vector<std::pair<std::string, std::string>>{
           {"", "missing cluster key"}, {"new-key-0123456789abcdeX", "invalid cluster key"}}) {
    absl::Mutex mu;
    std::vector<absl::Status> refusals;
    AttachCallbacks callbacks;
    callbacks.load = [] { return internal::v1::WorkerLoadReport(); };
    callbacks.on_refused = [&](absl::Status s) {
      absl::MutexLock lock(&mu);
      refusals.push_back(std::move(s));
    };
    RouterSetOptions options;
    options.routers = keyed.address();
    if (!key.empty()) options.cluster_key = *KeySet::Parse(key, "the worker's key");
    auto set = RouterSet::Start(options, Hello(), callbacks);
    ASSERT_TRUE(set.ok()) << set.status();
    ASSERT_TRUE(WaitFor([&] {
      absl::MutexLock lock(&mu);
      return !refusals.empty();
    })) << "key '"
        << key << "'";
    absl::MutexLock lock(&mu);
    EXPECT_EQ(refusals[0].code(), absl::StatusCode::kUnauthenticated) << refusals[0];
    EXPECT_NE(refusals[0].message().find(why), std::string_view::npos) << refusals[0];
    EXPECT_EQ((*set)->attached(), 0);
    EXPECT_EQ(keyed.Find("w"), nullptr);
  }
  for (const char* key : {"new-key-0123456789abcdef", "old-key-0123456789abcdef"}) {
    AttachCallbacks callbacks;
    callbacks.load = [] { return internal::v1::WorkerLoadReport(); };
    callbacks.on_refused = [](absl::Status s) { ADD_FAILURE() << s; };
    RouterSetOptions options;
    options.routers = keyed.address();
    options.cluster_key = *KeySet::Parse(key, "the worker's key");
    auto set = RouterSet::Start(options, Hello(), callbacks);
    ASSERT_TRUE(set.ok()) << set.status();
    EXPECT_TRUE(WaitFor([&] { return (*set)->attached() == 1 && keyed.Find("w") != nullptr; }))
        << key;
  }
}

}  // namespace
}  // namespace tokenfab
