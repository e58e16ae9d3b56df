// What `tokenfab bench` measures: one RequestRecord per request (filled by a
// LoadClient on the thread that ran the request), and the figures computed
// from all of them once the run is over.
//
// Definitions follow aiperf's, so the two tools can be compared figure for
// figure:
//  * TTFT: from sending the request to the first response carrying a
//    non-empty token chunk.
//  * Request latency (end to end): from sending to the last response that
//    carried tokens (a final usage-only message does not count).
//  * ITL (inter-token latency), per request: (request latency - TTFT) /
//    (output tokens - 1); its percentiles are taken over requests.
//  * Inter-chunk latency: every gap between consecutive token chunks of a
//    request, pooled over all requests (a transport-level view: one chunk
//    may carry several tokens).
//  * Duration: from the first request sent to the last token received;
//    throughputs divide by it.
//  * Goodput: requests per second of duration that met every given target
//    (TTFT <= ttft target and ITL <= itl target).
// Percentiles interpolate linearly between order statistics (numpy's
// default, which aiperf uses).
#ifndef TOKENFAB_SERVER_LOADGEN_STATS_H_
#define TOKENFAB_SERVER_LOADGEN_STATS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace tokenfab::loadgen {

// Times are seconds since the run's origin (one steady clock for the run).
struct RequestRecord {
  bool ok = false;
  std::string error;   // why it failed; empty when ok
  double start_s = 0;  // request sent
  double done_s = 0;   // stream closed (after any final usage message)
  // One entry per response that carried at least one token (or non-empty
  // text, over HTTP), in arrival order.
  std::vector<double> chunk_times_s;
  // Tokens in each chunk when the protocol says (gRPC); empty otherwise.
  std::vector<int32_t> chunk_tokens;
  // From the server's usage report; -1 when it sent none.
  int32_t prompt_tokens = -1;
  int32_t completion_tokens = -1;

  // Tokens generated: the server's count, else the chunks' token counts,
  // else one per chunk.
  int32_t OutputTokens() const;
  // Seconds; nullopt when the request produced no token.
  std::optional<double> Ttft() const;
  // (latency - TTFT) / (tokens - 1); nullopt with fewer than two tokens.
  std::optional<double> InterTokenLatency() const;
  // To the last token chunk; to the stream's end if there was none.
  double Latency() const {
    return (chunk_times_s.empty() ? done_s : chunk_times_s.back()) - start_s;
  }
};

// p in [0, 100]; linear interpolation between closest ranks (numpy
// "linear"). `values` need not be sorted. Empty input gives 0.
double Percentile(std::vector<double> values, double p);

struct Distribution {
  int64_t count = 0;
  double mean = 0;
  double min = 0;
  double max = 0;
  double p50 = 0;
  double p90 = 0;
  double p99 = 0;
};
Distribution Summarize(const std::vector<double>& values);

struct SloTargets {
  std::optional<double> ttft_ms;
  std::optional<double> itl_ms;
  bool any() const { return ttft_ms.has_value() || itl_ms.has_value(); }
};

struct BenchSummary {
  int64_t requests_completed = 0;
  int64_t requests_failed = 0;
  double duration_s = 0;
  double request_throughput = 0;       // completed requests / s
  double output_token_throughput = 0;  // output tokens / s
  double total_token_throughput = 0;   // (prompt + output tokens) / s
  int64_t total_output_tokens = 0;
  int64_t total_prompt_tokens = 0;  // server-reported, else the sent count
  Distribution ttft_ms;
  Distribution itl_ms;          // per request, aiperf's definition
  Distribution inter_chunk_ms;  // every chunk gap
  Distribution latency_ms;      // end to end
  Distribution output_tokens;   // per request
  Distribution prompt_tokens;   // per request, server-reported only
  // Completed requests whose output token count differs from the requested
  // one (a server that stopped early or over-generated).
  int64_t osl_mismatches = 0;
  std::optional<double> goodput;  // requests / s; set when a target is
  int64_t good_requests = 0;
  std::vector<std::string> sample_errors;  // the first few distinct errors
};

// `sent_prompt_tokens` stands in for requests whose server sent no usage;
// `expected_output_tokens` counts mismatches (0: do not check).
BenchSummary SummarizeRun(const std::vector<RequestRecord>& records, const SloTargets& targets,
                          int32_t sent_prompt_tokens, int32_t expected_output_tokens);

}  // namespace tokenfab::loadgen

#endif  // TOKENFAB_SERVER_LOADGEN_STATS_H_
