#include "server/loadgen/report.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace tokenfab::loadgen {
namespace {

BenchConditions Conditions() {
  BenchConditions c;
  c.target = "http://127.0.0.1:8080";
  c.model_id = "smollm2";
  c.concurrency = 4;
  c.isl = 128;
  c.osl = 64;
  c.requests = 2;
  c.seed = 7;
  c.tokenizer = "/models/smollm2.gguf";
  c.targets.ttft_ms = 500;
  c.machine = {
      .host = "box", .cpu = "AMD EPYC", .hardware_threads = 2, .load_average = "0.1 0.2 0.3"};
  c.load_average_at_end = "1.0 0.5 0.4";
  c.started_at = "2026-01-01T00:00:00Z";
  return c;
}

BenchSummary Summary() {
  RequestRecord a;
  a.ok = true;
  a.start_s = 0;
  a.chunk_times_s = {0.25, 0.5, 0.75};
  a.completion_tokens = 3;
  a.prompt_tokens = 128;
  RequestRecord b = a;
  b.chunk_times_s = {1.0, 1.5, 2.0};
  return SummarizeRun({a, b}, {.ttft_ms = 500.0}, 128, 3);
}

TEST(ReportTest, JsonCarriesConditionsAndFigures) {
  const nlohmann::json j = nlohmann::json::parse(FormatReportJson(Conditions(), Summary()));
  EXPECT_EQ(j["conditions"]["target"], "http://127.0.0.1:8080");
  EXPECT_EQ(j["conditions"]["mode"], "concurrency");
  EXPECT_EQ(j["conditions"]["concurrency"], 4);
  EXPECT_TRUE(j["conditions"]["rate"].is_null());
  EXPECT_EQ(j["conditions"]["isl"], 128);
  EXPECT_EQ(j["conditions"]["osl"], 64);
  EXPECT_EQ(j["conditions"]["machine"]["cpu"], "AMD EPYC");
  EXPECT_EQ(j["conditions"]["machine"]["load_average_end"], "1.0 0.5 0.4");
  EXPECT_DOUBLE_EQ(j["conditions"]["ttft_target_ms"].get<double>(), 500);
  EXPECT_TRUE(j["conditions"]["itl_target_ms"].is_null());
  const auto& r = j["results"];
  EXPECT_EQ(r["requests_completed"], 2);
  EXPECT_EQ(r["requests_failed"], 0);
  EXPECT_DOUBLE_EQ(r["duration_s"].get<double>(), 2.0);
  EXPECT_DOUBLE_EQ(r["output_token_throughput"].get<double>(), 3.0);
  EXPECT_DOUBLE_EQ(r["total_token_throughput"].get<double>(), (256 + 6) / 2.0);
  EXPECT_DOUBLE_EQ(r["ttft_ms"]["min"].get<double>(), 250);
  EXPECT_DOUBLE_EQ(r["ttft_ms"]["max"].get<double>(), 1000);
  EXPECT_DOUBLE_EQ(r["itl_ms"]["p50"].get<double>(), 375);
  EXPECT_DOUBLE_EQ(r["goodput"].get<double>(), 0.5);  // one of two met TTFT <= 500 ms
  EXPECT_EQ(r["good_requests"], 1);
  for (const char* key : {"ttft_ms", "itl_ms", "inter_chunk_ms", "request_latency_ms"}) {
    for (const char* stat : {"count", "mean", "min", "max", "p50", "p90", "p99"}) {
      EXPECT_TRUE(r[key].contains(stat)) << key << "." << stat;
    }
  }
}

TEST(ReportTest, OpenLoopConditions) {
  BenchConditions c = Conditions();
  c.rate = 2.5;
  const nlohmann::json j = nlohmann::json::parse(FormatReportJson(c, Summary()));
  EXPECT_EQ(j["conditions"]["mode"], "rate");
  EXPECT_DOUBLE_EQ(j["conditions"]["rate"].get<double>(), 2.5);
  EXPECT_NE(FormatReportText(c, Summary()).find("Poisson arrivals at 2.500 requests/s"),
            std::string::npos);
}

TEST(ReportTest, InvalidUtf8InAnErrorDoesNotBreakTheJson) {
  BenchSummary s = Summary();
  s.sample_errors.push_back("HTTP 500: \xff\xfe bad bytes");
  const std::string out = FormatReportJson(Conditions(), s);
  const nlohmann::json j = nlohmann::json::parse(out);
  EXPECT_EQ(j["results"]["errors"].size(), 1u);
}

TEST(ReportTest, RecordsAreOneJsonLinePerRequest) {
  RequestRecord a;
  a.ok = true;
  a.start_s = 0.5;
  a.chunk_times_s = {0.75, 1.0, 1.5};
  a.completion_tokens = 3;
  a.prompt_tokens = 128;
  RequestRecord b;
  b.error = "HTTP 429 \xff";
  b.start_s = 2;
  b.done_s = 2.25;
  const std::string lines = FormatRecordsJsonLines({a, b});
  const size_t nl = lines.find('\n');
  ASSERT_NE(nl, std::string::npos);
  ASSERT_EQ(lines.back(), '\n');
  const auto first = nlohmann::json::parse(lines.substr(0, nl));
  EXPECT_TRUE(first["ok"].get<bool>());
  EXPECT_DOUBLE_EQ(first["start_s"].get<double>(), 0.5);
  EXPECT_DOUBLE_EQ(first["ttft_s"].get<double>(), 0.25);
  EXPECT_DOUBLE_EQ(first["latency_s"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(first["itl_s"].get<double>(), 0.375);
  EXPECT_EQ(first["output_tokens"].get<int>(), 3);
  const auto second = nlohmann::json::parse(lines.substr(nl + 1));
  EXPECT_FALSE(second["ok"].get<bool>());
  EXPECT_TRUE(second["ttft_s"].is_null());
  EXPECT_TRUE(second["itl_s"].is_null());
  EXPECT_NE(second["error"].get<std::string>().find("HTTP 429"), std::string::npos);
}

TEST(ReportTest, TextNamesEveryFigureAndCondition) {
  const std::string text = FormatReportText(Conditions(), Summary());
  for (const char* needle :
       {"http://127.0.0.1:8080", "closed loop, concurrency 4", "isl 128 tokens, osl 64 tokens",
        "AMD EPYC, 2 hardware threads", "0.1 0.2 0.3 at start", "2 completed, 0 failed",
        "duration    2.000 s", "3.00 output tokens/s", "goodput     0.500 requests/s (1 of 2",
        "TTFT (ms)", "ITL (ms)", "inter-chunk gap (ms)", "request latency (ms)", "p90", "p99",
        "aiperf's definition"}) {
    EXPECT_NE(text.find(needle), std::string::npos) << needle << "\n" << text;
  }
}

}  // namespace
}  // namespace tokenfab::loadgen
