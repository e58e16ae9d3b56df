#include "server/loadgen/stats.h"

#include <gtest/gtest.h>

namespace tokenfab::loadgen {
namespace {

RequestRecord Record(double start, std::vector<double> chunks, int32_t completion_tokens = -1,
                     int32_t prompt_tokens = -1) {
  RequestRecord r;
  r.ok = true;
  r.start_s = start;
  r.chunk_times_s = std::move(chunks);
  r.done_s = r.chunk_times_s.empty() ? start + 1 : r.chunk_times_s.back() + 0.001;
  r.completion_tokens = completion_tokens;
  r.prompt_tokens = prompt_tokens;
  return r;
}

TEST(PercentileTest, InterpolatesLinearlyLikeNumpy) {
  // numpy.percentile([4, 1, 3, 2], [0, 50, 90, 99, 100]) = 1, 2.5, 3.7, 3.97, 4
  const std::vector<double> v = {4, 1, 3, 2};
  EXPECT_DOUBLE_EQ(Percentile(v, 0), 1);
  EXPECT_DOUBLE_EQ(Percentile(v, 50), 2.5);
  EXPECT_NEAR(Percentile(v, 90), 3.7, 1e-12);
  EXPECT_NEAR(Percentile(v, 99), 3.97, 1e-12);
  EXPECT_DOUBLE_EQ(Percentile(v, 100), 4);
}

TEST(PercentileTest, SingleAndEmpty) {
  EXPECT_DOUBLE_EQ(Percentile({7}, 99), 7);
  EXPECT_DOUBLE_EQ(Percentile({}, 50), 0);
}

TEST(PercentileTest, HundredValues) {
  std::vector<double> v;
  for (int i = 100; i >= 1; --i) v.push_back(i);
  // numpy.percentile(range(1, 101), [50, 90, 99]) = 50.5, 90.1, 99.01
  EXPECT_NEAR(Percentile(v, 50), 50.5, 1e-12);
  EXPECT_NEAR(Percentile(v, 90), 90.1, 1e-12);
  EXPECT_NEAR(Percentile(v, 99), 99.01, 1e-12);
}

TEST(DistributionTest, MeanMinMax) {
  const Distribution d = Summarize({2, 4, 9});
  EXPECT_EQ(d.count, 3);
  EXPECT_DOUBLE_EQ(d.mean, 5);
  EXPECT_DOUBLE_EQ(d.min, 2);
  EXPECT_DOUBLE_EQ(d.max, 9);
  EXPECT_DOUBLE_EQ(d.p50, 4);
}

TEST(RequestRecordTest, TtftLatencyAndItlFollowAiperf) {
  const RequestRecord r = Record(1.0, {1.5, 1.6, 1.7, 1.8});
  EXPECT_EQ(r.OutputTokens(), 4);
  EXPECT_NEAR(*r.Ttft(), 0.5, 1e-12);
  EXPECT_NEAR(r.Latency(), 0.8, 1e-12);  // to the last token, not the stream's end
  EXPECT_NEAR(*r.InterTokenLatency(), 0.1, 1e-12);
}

TEST(RequestRecordTest, ServerTokenCountWinsOverChunks) {
  // Five tokens in four chunks: ITL divides the decode time by 4 tokens.
  const RequestRecord r = Record(0.0, {0.2, 0.3, 0.4, 0.6}, /*completion_tokens=*/5);
  EXPECT_EQ(r.OutputTokens(), 5);
  EXPECT_NEAR(*r.InterTokenLatency(), 0.4 / 4, 1e-12);
}

TEST(RequestRecordTest, ChunkTokenCountsWithoutUsage) {
  RequestRecord r = Record(0.0, {0.2, 0.4});
  r.chunk_tokens = {1, 3};
  EXPECT_EQ(r.OutputTokens(), 4);
}

TEST(RequestRecordTest, NoItlBelowTwoTokens) {
  EXPECT_FALSE(Record(0, {0.5}).InterTokenLatency().has_value());
  EXPECT_FALSE(Record(0, {}).Ttft().has_value());
}

TEST(SummarizeRunTest, ThroughputOverFirstSendToLastToken) {
  // Two requests of 3 tokens; the run spans 0.0 .. 2.0 s.
  std::vector<RequestRecord> records = {Record(0.0, {0.5, 0.75, 1.0}, 3, 10),
                                        Record(0.5, {1.0, 1.5, 2.0}, 3, 10)};
  const BenchSummary s = SummarizeRun(records, {}, 10, 3);
  EXPECT_EQ(s.requests_completed, 2);
  EXPECT_EQ(s.requests_failed, 0);
  EXPECT_DOUBLE_EQ(s.duration_s, 2.0);
  EXPECT_DOUBLE_EQ(s.request_throughput, 1.0);
  EXPECT_DOUBLE_EQ(s.output_token_throughput, 3.0);
  EXPECT_DOUBLE_EQ(s.total_token_throughput, 13.0);
  EXPECT_EQ(s.osl_mismatches, 0);
  EXPECT_DOUBLE_EQ(s.ttft_ms.p50, 500);
  EXPECT_DOUBLE_EQ(s.itl_ms.min, 250);
  EXPECT_DOUBLE_EQ(s.itl_ms.max, 500);
  EXPECT_DOUBLE_EQ(s.latency_ms.max, 1500);
  EXPECT_EQ(s.inter_chunk_ms.count, 4);
  EXPECT_DOUBLE_EQ(s.inter_chunk_ms.max, 500);
  EXPECT_FALSE(s.goodput.has_value());
}

TEST(SummarizeRunTest, GoodputCountsRequestsMeetingBothTargets) {
  std::vector<RequestRecord> records = {
      Record(0.0, {0.1, 0.2, 0.3}),    // TTFT 100, ITL 100: good
      Record(0.0, {0.3, 0.4, 0.5}),    // TTFT 300: misses TTFT
      Record(0.0, {0.1, 0.5, 0.9}),    // ITL 400: misses ITL
      Record(0.0, {0.15, 0.25, 1.0}),  // TTFT 150, ITL 425: misses ITL
  };
  const BenchSummary s = SummarizeRun(records, {.ttft_ms = 200.0, .itl_ms = 200.0}, 8, 3);
  ASSERT_TRUE(s.goodput.has_value());
  EXPECT_EQ(s.good_requests, 1);
  EXPECT_DOUBLE_EQ(*s.goodput, 1.0 / 1.0);  // duration 1.0 s
  const BenchSummary ttft_only = SummarizeRun(records, {.ttft_ms = 200.0}, 8, 3);
  EXPECT_EQ(ttft_only.good_requests, 3);
}

TEST(SummarizeRunTest, FailuresAndMismatchesAreCounted) {
  RequestRecord failed;
  failed.ok = false;
  failed.error = "HTTP 503: busy";
  failed.start_s = 0;
  failed.done_s = 0.1;
  RequestRecord failed_again = failed;
  std::vector<RequestRecord> records = {Record(0.0, {0.5, 1.0}), failed, failed_again,
                                        Record(0.0, {0.5, 1.0, 1.5})};
  const BenchSummary s = SummarizeRun(records, {}, /*sent_prompt_tokens=*/16, /*osl=*/2);
  EXPECT_EQ(s.requests_completed, 2);
  EXPECT_EQ(s.requests_failed, 2);
  EXPECT_EQ(s.osl_mismatches, 1);
  EXPECT_EQ(s.total_prompt_tokens, 32);  // no usage: the sent count stands in
  EXPECT_EQ(s.prompt_tokens.count, 0);
  ASSERT_EQ(s.sample_errors.size(), 1u);
  EXPECT_EQ(s.sample_errors[0], "HTTP 503: busy");
}

TEST(SummarizeRunTest, EmptyRun) {
  const BenchSummary s = SummarizeRun({}, {.ttft_ms = 1.0}, 8, 8);
  EXPECT_EQ(s.requests_completed, 0);
  EXPECT_DOUBLE_EQ(s.duration_s, 0);
  EXPECT_DOUBLE_EQ(s.output_token_throughput, 0);
  ASSERT_TRUE(s.goodput.has_value());
  EXPECT_DOUBLE_EQ(*s.goodput, 0);
}

}  // namespace
}  // namespace tokenfab::loadgen
