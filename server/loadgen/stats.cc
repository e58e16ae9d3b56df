#include "server/loadgen/stats.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

namespace tokenfab::loadgen {
namespace {

constexpr size_t kMaxSampleErrors = 5;

}  // namespace

int32_t RequestRecord::OutputTokens() const {
  if (completion_tokens >= 0) return completion_tokens;
  if (!chunk_tokens.empty()) return std::accumulate(chunk_tokens.begin(), chunk_tokens.end(), 0);
  return static_cast<int32_t>(chunk_times_s.size());
}

std::optional<double> RequestRecord::Ttft() const {
  if (chunk_times_s.empty()) return std::nullopt;
  return chunk_times_s.front() - start_s;
}

std::optional<double> RequestRecord::InterTokenLatency() const {
  const int32_t tokens = OutputTokens();
  std::optional<double> ttft = Ttft();
  if (tokens < 2 || !ttft) return std::nullopt;
  return (Latency() - *ttft) / (tokens - 1);
}

double Percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const double rank = std::clamp(p, 0.0, 100.0) / 100.0 * static_cast<double>(values.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(rank));
  const size_t hi = std::min(lo + 1, values.size() - 1);
  const double frac = rank - static_cast<double>(lo);
  return values[lo] + (values[hi] - values[lo]) * frac;
}

Distribution Summarize(const std::vector<double>& values) {
  Distribution d;
  d.count = static_cast<int64_t>(values.size());
  if (values.empty()) return d;
  d.mean = std::accumulate(values.begin(), values.end(), 0.0) / static_cast<double>(values.size());
  auto [mn, mx] = std::minmax_element(values.begin(), values.end());
  d.min = *mn;
  d.max = *mx;
  d.p50 = Percentile(values, 50);
  d.p90 = Percentile(values, 90);
  d.p99 = Percentile(values, 99);
  return d;
}

BenchSummary SummarizeRun(const std::vector<RequestRecord>& records, const SloTargets& targets,
                          int32_t sent_prompt_tokens, int32_t expected_output_tokens) {
  BenchSummary s;
  double first_start = std::numeric_limits<double>::infinity();
  double last_end = -std::numeric_limits<double>::infinity();
  std::vector<double> ttft, itl, gaps, latency, out_tokens, prompt_tokens;
  for (const RequestRecord& r : records) {
    first_start = std::min(first_start, r.start_s);
    if (!r.ok) {
      ++s.requests_failed;
      last_end = std::max(last_end, r.start_s + r.Latency());
      if (s.sample_errors.size() < kMaxSampleErrors &&
          std::find(s.sample_errors.begin(), s.sample_errors.end(), r.error) ==
              s.sample_errors.end()) {
        s.sample_errors.push_back(r.error);
      }
      continue;
    }
    ++s.requests_completed;
    last_end = std::max(last_end, r.start_s + r.Latency());
    const int32_t tokens = r.OutputTokens();
    s.total_output_tokens += tokens;
    s.total_prompt_tokens += r.prompt_tokens >= 0 ? r.prompt_tokens : sent_prompt_tokens;
    out_tokens.push_back(tokens);
    if (r.prompt_tokens >= 0) prompt_tokens.push_back(r.prompt_tokens);
    if (expected_output_tokens > 0 && tokens != expected_output_tokens) ++s.osl_mismatches;
    latency.push_back(r.Latency() * 1e3);
    const std::optional<double> t = r.Ttft();
    const std::optional<double> i = r.InterTokenLatency();
    if (t) ttft.push_back(*t * 1e3);
    if (i) itl.push_back(*i * 1e3);
    for (size_t k = 1; k < r.chunk_times_s.size(); ++k) {
      gaps.push_back((r.chunk_times_s[k] - r.chunk_times_s[k - 1]) * 1e3);
    }
    // A request with no token cannot meet a TTFT target; one with a single
    // token has no inter-token latency and meets any ITL target.
    const bool ttft_ok = !targets.ttft_ms || (t && *t * 1e3 <= *targets.ttft_ms);
    const bool itl_ok = !targets.itl_ms || !i || *i * 1e3 <= *targets.itl_ms;
    if (ttft_ok && itl_ok) ++s.good_requests;
  }
  if (!records.empty() && last_end > first_start) s.duration_s = last_end - first_start;
  if (s.duration_s > 0) {
    s.request_throughput = static_cast<double>(s.requests_completed) / s.duration_s;
    s.output_token_throughput = static_cast<double>(s.total_output_tokens) / s.duration_s;
    s.total_token_throughput =
        static_cast<double>(s.total_output_tokens + s.total_prompt_tokens) / s.duration_s;
  }
  if (targets.any()) {
    s.goodput = s.duration_s > 0 ? static_cast<double>(s.good_requests) / s.duration_s : 0.0;
  } else {
    s.good_requests = 0;
  }
  s.ttft_ms = Summarize(ttft);
  s.itl_ms = Summarize(itl);
  s.inter_chunk_ms = Summarize(gaps);
  s.latency_ms = Summarize(latency);
  s.output_tokens = Summarize(out_tokens);
  s.prompt_tokens = Summarize(prompt_tokens);
  return s;
}

}  // namespace tokenfab::loadgen
