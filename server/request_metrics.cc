#include "server/request_metrics.h"

#include "server/metric_families.h"

namespace tokenfab {
namespace {

prometheus::Family<prometheus::Counter>& CounterFamily(prometheus::Registry& r,
                                                       const std::string& name,
                                                       const std::string& help) {
  return prometheus::BuildCounter().Name(name).Help(help).Register(r);
}

prometheus::Histogram& Latency(prometheus::Registry& r, const std::string& name,
                               const std::string& help) {
  return prometheus::BuildHistogram().Name(name).Help(help).Register(r).Add({}, LatencyBuckets());
}

prometheus::Gauge& OneGauge(prometheus::Registry& r, const std::string& name,
                            const std::string& help) {
  return prometheus::BuildGauge().Name(name).Help(help).Register(r).Add({});
}

}  // namespace

RequestMetrics::RequestMetrics(prometheus::Registry& r)
    : requests_(CounterFamily(r, "tokenfab_router_requests_total",
                              "Requests by outcome: stop, length, cancelled, error (finished "
                              "by a worker), rejected (queue full or no worker), invalid.")),
      rejections_(CounterFamily(r, "tokenfab_router_rejections_total",
                                "Requests refused before routing, by reason: queue_full, "
                                "no_worker.")),
      stop_(requests_.Add({{"outcome", "stop"}})),
      length_(requests_.Add({{"outcome", "length"}})),
      cancelled_(requests_.Add({{"outcome", "cancelled"}})),
      error_(requests_.Add({{"outcome", "error"}})),
      rejected_(requests_.Add({{"outcome", "rejected"}})),
      invalid_(requests_.Add({{"outcome", "invalid"}})),
      queue_full_(rejections_.Add({{"reason", "queue_full"}})),
      no_worker_(rejections_.Add({{"reason", "no_worker"}})),
      ttft_(Latency(r, "tokenfab_router_time_to_first_token_seconds",
                    "From a request's arrival to its first generated token.")),
      itl_(Latency(r, "tokenfab_router_inter_token_latency_seconds",
                   "Between consecutive generated tokens of a request.")),
      e2e_(Latency(r, "tokenfab_router_e2e_request_latency_seconds",
                   "From a request's arrival to its last response.")),
      prompt_tokens_(CounterFamily(r, "tokenfab_router_prompt_tokens_total",
                                   "Prompt tokens of the requests that got a first token.")
                         .Add({})),
      cached_tokens_(CounterFamily(r, "tokenfab_router_cached_tokens_total",
                                   "Prompt tokens found in a worker's prefix cache.")
                         .Add({})),
      generation_tokens_(CounterFamily(r, "tokenfab_router_generation_tokens_total",
                                       "Tokens generated for clients.")
                             .Add({})),
      in_flight_(
          OneGauge(r, "tokenfab_router_requests_in_flight", "Requests routed and not finished.")),
      queued_(OneGauge(r, "tokenfab_router_requests_queued",
                       "Requests routed that have no token yet (queued or in prefill).")) {}

void RequestMetrics::Refused(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kResourceExhausted:
      rejected_.Increment();
      queue_full_.Increment();
      break;
    case absl::StatusCode::kUnavailable:
      rejected_.Increment();
      no_worker_.Increment();
      break;
    default:
      invalid_.Increment();
  }
}

void RequestMetrics::Started() {
  in_flight_.Increment();
  queued_.Increment();
}

void RequestMetrics::Abandoned() {
  in_flight_.Decrement();
  queued_.Decrement();
}

void RequestMetrics::FirstToken(double ttft_seconds, int32_t prompt_tokens, int32_t cached_tokens) {
  ttft_.Observe(ttft_seconds);
  prompt_tokens_.Increment(prompt_tokens);
  cached_tokens_.Increment(cached_tokens);
  queued_.Decrement();
}

void RequestMetrics::Tokens(int32_t tokens, double gap_seconds, bool first) {
  if (tokens <= 0) return;
  generation_tokens_.Increment(tokens);
  // The first token's wait is TTFT, not an inter-token gap.
  const int32_t gaps = first ? tokens - 1 : tokens;
  if (gaps <= 0) return;
  const double each = first ? 0.0 : gap_seconds / tokens;
  for (int32_t i = 0; i < gaps; ++i) itl_.Observe(each);
}

void RequestMetrics::Finished(v1::FinishReason reason, double e2e_seconds, bool got_first_token) {
  if (!got_first_token) queued_.Decrement();
  in_flight_.Decrement();
  e2e_.Observe(e2e_seconds);
  switch (reason) {
    case v1::FINISH_REASON_STOP:
      stop_.Increment();
      break;
    case v1::FINISH_REASON_LENGTH:
      length_.Increment();
      break;
    case v1::FINISH_REASON_CANCELLED:
      cancelled_.Increment();
      break;
    default:
      error_.Increment();
  }
}

}  // namespace tokenfab
