// Pushes the router planner's decisions to an operator's webhook
// (`--planner-webhook http://HOST[:PORT][/PATH]`): each new decision, a JSON
// document, is POSTed there with retries and exponential backoff. Only the
// latest decision matters, so a newer one replaces one still waiting or
// retrying; a decision that exhausts its attempts is dropped with one line on
// stderr. Plain HTTP only: TLS belongs to a sidecar or ingress.
//
// Each POST carries
//   Content-Type: application/json
//   User-Agent: tokenfab-planner
//   X-Tokenfab-Timestamp: <unix seconds when this attempt was sent>
//   X-Tokenfab-Delivery: <id, increasing per decision, the same across retries>
//   X-Tokenfab-Signature: sha256=<lowercase hex HMAC-SHA256(secret, timestamp "." body)>
// (the signature only when a secret is set). The timestamp is inside the
// signed message so a receiver can refuse replays: verify the signature with a
// constant-time compare, then refuse a timestamp more than a few minutes old
// and a delivery id it has already acted on. Ids skip the decisions that were
// superseded before they were delivered.
//
// Threads: one sender thread per PlannerWebhook owns the connection; Publish()
// and stats() may be called from any thread and never block on the network.
#ifndef TOKENFAB_SERVER_PLANNER_WEBHOOK_H_
#define TOKENFAB_SERVER_PLANNER_WEBHOOK_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace boost::asio {
class io_context;
}  // namespace boost::asio

namespace tokenfab {

struct WebhookOptions {
  std::string url;           // http://HOST[:PORT][/PATH]; port 80 and path "/" by default
  std::string secret;        // HMAC key; empty sends unsigned (no X-Tokenfab-Signature)
  int32_t max_attempts = 6;  // per decision
  // The wait before retry n (n = 1, 2, ...) is initial_backoff * 2^(n-1),
  // capped at max_backoff, plus up to 20% jitter so that many routers pointed
  // at one receiver do not retry in step.
  std::chrono::milliseconds initial_backoff{500};
  std::chrono::milliseconds max_backoff{30000};
  std::chrono::milliseconds timeout{5000};  // resolve + connect + send + read, per attempt
};

struct WebhookStats {
  int64_t delivered = 0;        // decisions answered with a 2xx
  int64_t failed_attempts = 0;  // POSTs refused, timed out or answered otherwise
  int64_t dropped = 0;          // decisions given up after max_attempts
  int64_t superseded = 0;       // decisions replaced by a newer one before delivery
};

class PlannerWebhook {
 public:
  // Validates the options (the URL's errors name the --planner-webhook flag)
  // and starts the sender thread. Makes no connection.
  static absl::StatusOr<std::unique_ptr<PlannerWebhook>> Create(WebhookOptions options);
  // Stops the sender promptly: abandons an attempt in flight and a backoff.
  ~PlannerWebhook();

  PlannerWebhook(const PlannerWebhook&) = delete;
  PlannerWebhook& operator=(const PlannerWebhook&) = delete;

  // Any thread; returns at once. Queues `json_body` for delivery, replacing
  // (superseding) a decision not yet delivered.
  void Publish(std::string json_body);
  WebhookStats stats() const;

 private:
  struct Endpoint {
    std::string host;  // without IPv6 brackets
    uint16_t port = 80;
    std::string target;       // path and query
    std::string host_header;  // host[:port] as the Host header wants it
  };
  struct Decision {
    int64_t id = 0;
    std::string body;
  };

  PlannerWebhook(WebhookOptions options, Endpoint endpoint);
  void Run();
  // Attempts `decision` until it is delivered, dropped or superseded; false
  // when the webhook is stopping.
  bool Deliver(const Decision& decision);
  // One POST; OK on a 2xx answer.
  absl::Status Attempt(const Decision& decision);
  bool StoppingOrNewer() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return stop_ || next_.has_value();
  }

  const WebhookOptions options_;
  const Endpoint endpoint_;
  std::mt19937 jitter_rng_;  // sender thread only

  mutable absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  int64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  std::optional<Decision> next_ ABSL_GUARDED_BY(mu_);  // published, not yet taken by the sender
  boost::asio::io_context* attempt_io_ ABSL_GUARDED_BY(mu_) = nullptr;  // the POST in flight
  WebhookStats stats_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

// The wait after `failed_attempts` (>= 1) failures of one decision, for a
// `jitter` in [0, 1) (scaled to 0..20%). Exposed for the test.
std::chrono::milliseconds WebhookRetryDelay(const WebhookOptions& options, int32_t failed_attempts,
                                            double jitter);

// Lowercase hex HMAC-SHA256, as in X-Tokenfab-Signature; receivers compute
// HmacSha256Hex(secret, timestamp + "." + body).
std::string HmacSha256Hex(std::string_view key, std::string_view message);

}  // namespace tokenfab

#endif  // TOKENFAB_SERVER_PLANNER_WEBHOOK_H_
