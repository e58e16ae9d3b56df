// The router's request metrics, as clients see the service: outcomes,
// rejections, time to first token, inter-token latency, end-to-end latency,
// prompt / cached / generated tokens, requests in flight and still waiting
// for their first token. Router updates them on the request path.
//
// Thread-safe.
#ifndef TOKENFAB_SERVER_REQUEST_METRICS_H_
#define TOKENFAB_SERVER_REQUEST_METRICS_H_

#include <chrono>
#include <string>

#include "absl/status/status.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "tokenfab/v1/generation.pb.h"

namespace tokenfab {

class RequestMetrics {
 public:
  explicit RequestMetrics(prometheus::Registry& registry);

  // A request was refused before it reached a worker: ResourceExhausted and
  // Unavailable are rejections (queue full, no worker), the rest invalid.
  void Refused(const absl::Status& status);
  // A request is being handed to a worker; Abandoned() if that failed.
  void Started();
  void Abandoned();
  // Its first output arrived `ttft` after the request did.
  void FirstToken(double ttft_seconds, int32_t prompt_tokens, int32_t cached_tokens);
  // `tokens` more tokens arrived, `gap_seconds` after the previous ones
  // (each token counts gap / tokens as its inter-token latency).
  void Tokens(int32_t tokens, double gap_seconds, bool first);
  // It ended (`reason` from its last response); `got_first_token` says
  // whether FirstToken was called for it.
  void Finished(v1::FinishReason reason, double e2e_seconds, bool got_first_token);

 private:
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Counter>& rejections_;
  prometheus::Counter &stop_, &length_, &cancelled_, &error_, &rejected_, &invalid_;
  prometheus::Counter &queue_full_, &no_worker_;
  prometheus::Histogram &ttft_, &itl_, &e2e_;
  prometheus::Counter &prompt_tokens_, &cached_tokens_, &generation_tokens_;
  prometheus::Gauge &in_flight_, &queued_;
};

}  // namespace tokenfab

#endif  // TOKENFAB_SERVER_REQUEST_METRICS_H_
