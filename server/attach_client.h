// The worker's end of the router's WorkerControl.Attach stream. On its own
// thread it connects, says hello (id, address, role, capacity, model
// fingerprint, KV wire version, and a snapshot of every block hash in its
// prefix cache), then sends KV events as the engine produces them and a load
// report every interval; a second thread reads the router's orders. When the
// stream breaks (router restarted, network) it reconnects and says hello
// again with a fresh snapshot, so the router's KV index is rebuilt. A
// refusal (FAILED_PRECONDITION: another model, another wire version;
// UNAUTHENTICATED: another cluster key) is final and reported through
// on_refused. Every load report carries the
// current role. A worker with several routers has one client per router
// (router_set.h).
#ifndef TOKENFAB_SERVER_ATTACH_CLIENT_H_
#define TOKENFAB_SERVER_ATTACH_CLIENT_H_

#include <chrono>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/grpcpp.h"
#include "server/auth.h"
#include "tokenfab/internal/v1/control.grpc.pb.h"

namespace tokenfab {

struct AttachCallbacks {
  std::function<internal::v1::WorkerLoadReport()> load;  // any thread
  std::function<void(internal::v1::WorkerRole)> on_role;
  std::function<void()> on_drain;
  std::function<void(absl::Status)> on_refused;
  // The router welcomed this worker; its id (control.proto Welcome).
  std::function<void(uint64_t router_id)> on_welcome;
};

// Applies KV events to a mirror of the prefix cache's block hashes.
void ApplyKvEvents(const std::vector<internal::v1::KvEvent>& events,
                   absl::flat_hash_set<uint64_t>* cached);

class AttachClient {
 public:
  // `hello` is sent on every (re)attach, with the current role and snapshot;
  // `cached` is the prefix cache's block hashes when the client starts;
  // `cluster_key`'s first key (auth.h), if any, goes with the stream.
  AttachClient(std::string router, internal::v1::WorkerHello hello, AttachCallbacks callbacks,
               std::chrono::milliseconds report_interval = std::chrono::milliseconds(200),
               absl::flat_hash_set<uint64_t> cached = {}, KeySet cluster_key = {});
  ~AttachClient();  // closes the stream and joins its threads

  // Engine thread: the prefix cache's changes, forwarded in order.
  void OnKvEvents(std::vector<internal::v1::KvEvent> events);
  // Sends a load report now (e.g. the worker started draining).
  void ReportNow();
  internal::v1::WorkerRole role() const;
  // The role another router ordered: carried by the next reports and hello.
  void SetRole(internal::v1::WorkerRole role);
  bool attached() const;
  const std::string& router() const { return router_; }

 private:
  void Run();
  // One attachment; returns how the stream ended.
  grpc::Status Session();

  const std::string router_;
  const KeySet cluster_key_;
  const internal::v1::WorkerHello hello_;
  const AttachCallbacks callbacks_;
  const std::chrono::milliseconds interval_;

  mutable absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool report_now_ ABSL_GUARDED_BY(mu_) = false;
  bool attached_ ABSL_GUARDED_BY(mu_) = false;
  internal::v1::WorkerRole role_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<uint64_t> cached_ ABSL_GUARDED_BY(mu_);  // mirror of the prefix cache
  std::vector<internal::v1::KvEvent> pending_ ABSL_GUARDED_BY(mu_);
  grpc::ClientContext* context_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::thread thread_;
};

}  // namespace tokenfab

#endif  // TOKENFAB_SERVER_ATTACH_CLIENT_H_
