// The decode side of disaggregated prefill, as the engine sees it: "get me
// the KV of these positions from that worker". The worker process implements
// it (a Prefill RPC to the prefill worker plus a KvTransport transfer); the
// engine only hands out jobs and takes back the KV or the reason there is
// none, and then recomputes the prompt itself.
#ifndef TOKENFAB_WORKER_ENGINE_REMOTE_PREFILLER_H_
#define TOKENFAB_WORKER_ENGINE_REMOTE_PREFILLER_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tokenfab/internal/v1/worker.pb.h"
#include "worker/engine/kv_cache.h"
#include "worker/transport/kv_transport.h"

namespace tokenfab {

struct RemotePrefillJob {
  std::string request_id;
  internal::v1::RemotePrefill where;
  // The prefill worker computes these tokens' KV (the prompt without its
  // last token) and sends positions [send_from, tokens.size()).
  std::vector<int32_t> tokens;
  int32_t send_from = 0;
  int64_t deadline_unix_ms = 0;
  KvLayout layout;
};

class RemotePrefiller {
 public:
  using Done = std::function<void(absl::StatusOr<std::unique_ptr<ReceivedKv>>)>;

  virtual ~RemotePrefiller() = default;
  // Called on the engine thread; must not block. `done` runs once, on any
  // thread, unless the job is aborted first.
  virtual void Start(RemotePrefillJob job, Done done) = 0;
  // The job's KV is no longer wanted; `done` is not called after this returns.
  virtual void Abort(const std::string& request_id) = 0;
};

}  // namespace tokenfab

#endif  // TOKENFAB_WORKER_ENGINE_REMOTE_PREFILLER_H_
