// A worker's attachments to its routers. `--router` is a comma-separated
// list of HOST:PORT, and each HOST may be an address or a DNS name that
// resolves to several (a Kubernetes headless Service over the router
// replicas). The set holds one AttachClient per resolved address, so every
// router replica sees this worker's load and KV events and can route to it.
// It resolves the names again every `resolve_interval`: a router that
// appears is attached with a snapshot of the prefix cache, one that is gone
// from DNS is detached.
//
// What the attachments share lives here: the worker's role (any router may
// set it; the others learn it from the next load report) and the mirror of
// the prefix cache that a new attachment's hello starts from. A drain order
// from any router is the worker's; a refusal only when every router refuses
// (during a rollout the old routers may refuse what the new ones take). One
// router reached by two addresses (its welcome carries a per-process id) is
// attached once.
#ifndef TOKENFAB_SERVER_ROUTER_SET_H_
#define TOKENFAB_SERVER_ROUTER_SET_H_

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "server/attach_client.h"

namespace tokenfab {

struct RouterEndpoint {
  std::string host;  // without brackets for IPv6
  uint16_t port = 0;
};

// "a:1,b:2,[::1]:3" -> endpoints; InvalidArgument names the bad entry.
absl::StatusOr<std::vector<RouterEndpoint>> ParseRouterList(std::string_view list);

// One endpoint's addresses as gRPC targets ("10.0.0.7:50052",
// "[fd00::7]:50052"), sorted. A name with IPv4 addresses gives only those
// (a dual-stack name would otherwise attach twice to each router); one with
// none gives its IPv6 addresses.
absl::StatusOr<std::vector<std::string>> ResolveRouter(const RouterEndpoint& endpoint);

struct RouterSetOptions {
  std::string routers;  // the --router value
  std::chrono::milliseconds report_interval{200};
  std::chrono::milliseconds resolve_interval{5000};
  KeySet cluster_key;  // its first key goes with every Attach stream (auth.h)
};

class RouterSet {
 public:
  // Checks the list (a malformed one is InvalidArgument), then attaches to
  // every address it resolves to now, retrying names that do not resolve
  // yet on the resolve interval.
  static absl::StatusOr<std::unique_ptr<RouterSet>> Start(RouterSetOptions options,
                                                          internal::v1::WorkerHello hello,
                                                          AttachCallbacks callbacks);
  ~RouterSet();  // detaches from every router

  // Engine thread: the prefix cache's changes, to every router.
  void OnKvEvents(std::vector<internal::v1::KvEvent> events);
  // Sends a load report to every router now.
  void ReportNow();
  internal::v1::WorkerRole role() const;
  // How many routers have welcomed this worker.
  int attached() const;
  // The addresses the set is attached (or attaching) to, sorted.
  std::vector<std::string> targets() const;

 private:
  // One router address: its client (none for an address that turned out to
  // be a router already attached), what its welcome said, whether it refused.
  struct Attachment {
    std::unique_ptr<AttachClient> client;
    bool duplicate = false;
    bool refused = false;
    uint64_t router_id = 0;
  };
  static constexpr size_t kMaxRouters = 256;

  RouterSet(RouterSetOptions options, std::vector<RouterEndpoint> endpoints,
            internal::v1::WorkerHello hello, AttachCallbacks callbacks);
  void ResolveLoop();
  // Attaches to new addresses, detaches from vanished and duplicate ones.
  void Update();
  AttachCallbacks CallbacksFor(const std::string& target);
  void OnRole(internal::v1::WorkerRole role);
  void OnWelcome(const std::string& target, uint64_t router_id);
  void OnRefused(const std::string& target, absl::Status why);

  const RouterSetOptions options_;
  const std::vector<RouterEndpoint> endpoints_;
  const internal::v1::WorkerHello hello_;
  const AttachCallbacks callbacks_;

  mutable absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool update_now_ ABSL_GUARDED_BY(mu_) = false;
  internal::v1::WorkerRole role_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<uint64_t> cached_ ABSL_GUARDED_BY(mu_);  // mirror of the prefix cache
  std::map<std::string, Attachment> clients_ ABSL_GUARDED_BY(mu_);
  // Each endpoint's addresses at its last successful lookup.
  std::vector<std::vector<std::string>> resolved_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<std::string> unresolved_ ABSL_GUARDED_BY(mu_);  // warned about once
  std::thread resolver_;
};

}  // namespace tokenfab

#endif  // TOKENFAB_SERVER_ROUTER_SET_H_
