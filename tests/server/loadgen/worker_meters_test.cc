// `tokenfab bench`'s reading of the workers' meters: Prometheus text summed
// over workers, malformed samples refused, and the run's figures from two
// readings; and the report lines that carry them.
#include "server/loadgen/worker_meters.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "server/loadgen/report.h"

namespace tokenfab::loadgen {
namespace {

constexpr char kPage[] =
    R"(# HELP tokenfab_energy_joules_total Energy used since the worker started.
# TYPE tokenfab_energy_joules_total counter
tokenfab_energy_joules_total{worker="w0",source="rapl"} 100
tokenfab_energy_joules_total{worker="w1",source="rapl"} 50.5
tokenfab_phase_energy_joules_total{worker="w0",source="rapl",phase="prefill"} 20
tokenfab_phase_energy_joules_total{worker="w0",source="rapl",phase="decode"} 60
tokenfab_phase_energy_joules_total{worker="w0",source="rapl",phase="idle"} 20
tokenfab_worker_tokens_total{worker="w0",phase="prefill"} 1000
tokenfab_worker_tokens_total{worker="w0",phase="decode"} 300
tokenfab_worker_tokens_total{worker="we\"ird,name",phase="decode"} 1e2
tokenfab_worker_steps_total{worker="w0"} not-a-number-but-not-ours
)";

TEST(WorkerMetersTest, SumsEnergyAndTokensOverWorkers) {
  absl::StatusOr<MeterReading> r = ParseMeterReading(kPage);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->meters, 2);
  EXPECT_DOUBLE_EQ(r->joules_by_source.at("rapl"), 150.5);
  EXPECT_DOUBLE_EQ(r->prefill_joules, 20);
  EXPECT_DOUBLE_EQ(r->decode_joules, 60);
  EXPECT_DOUBLE_EQ(r->idle_joules, 20);
  EXPECT_DOUBLE_EQ(r->prefill_tokens, 1000);
  EXPECT_DOUBLE_EQ(r->decode_tokens, 400);
}

TEST(WorkerMetersTest, MalformedEnergySampleIsRefused) {
  for (const char* bad : {"tokenfab_energy_joules_total{source=\"rapl\"} abc\n",
                          "tokenfab_energy_joules_total{source=\"rapl} 1\n",
                          "tokenfab_energy_joules_total{source=rapl} 1\n",
                          "tokenfab_energy_joules_total{source=\"rapl\"} 1e999\n",
                          "tokenfab_energy_joules_total\n"}) {
    absl::StatusOr<MeterReading> r = ParseMeterReading(bad);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

TEST(WorkerMetersTest, RunFiguresComeFromTheDifference) {
  MeterReading before, after;
  before.joules_by_source["model"] = 100;
  after.joules_by_source["model"] = 300;  // 200 J over the run
  after.meters = 1;
  before.prefill_joules = 10, after.prefill_joules = 30;  // 20 J for 2000 prompt tokens
  before.prefill_tokens = 0, after.prefill_tokens = 2000;
  before.decode_joules = 0, after.decode_joules = 150;  // 150 J for 500 tokens
  before.decode_tokens = 100, after.decode_tokens = 600;
  const RunEnergy e = EnergyOfRun(before, after, 500);
  EXPECT_DOUBLE_EQ(e.joules, 200);
  EXPECT_DOUBLE_EQ(e.tokens_per_joule, 2.5);
  EXPECT_DOUBLE_EQ(e.joules_per_token, 0.4);
  EXPECT_DOUBLE_EQ(e.prefill_joules_per_token, 0.01);
  EXPECT_DOUBLE_EQ(e.decode_joules_per_token, 0.3);
  EXPECT_NE(e.sources.find("declared estimate"), std::string::npos);
}

TEST(WorkerMetersTest, UnreachableMetersAreUnavailable) {
  EXPECT_EQ(ReadWorkerMeters({"http://127.0.0.1:1/metrics"}).status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(ReadWorkerMeters({"ftp://x/metrics"}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(WorkerMetersTest, ReportCarriesEnergyOrSaysWhyNot) {
  BenchConditions c;
  BenchSummary s;
  EnergyReport with;
  with.energy = RunEnergy{.sources = "rapl",
                          .meters = 2,
                          .joules = 200,
                          .tokens_per_joule = 2.5,
                          .joules_per_token = 0.4,
                          .prefill_joules_per_token = 0.01,
                          .decode_joules_per_token = 0.3};
  const nlohmann::json j = nlohmann::json::parse(FormatReportJson(c, s, with));
  EXPECT_DOUBLE_EQ(j["results"]["energy"]["tokens_per_joule"].get<double>(), 2.5);
  EXPECT_EQ(j["results"]["energy"]["source"], "rapl");
  const std::string text = FormatReportText(c, s, with);
  EXPECT_NE(text.find("2.5000 output tokens/J"), std::string::npos) << text;
  EXPECT_NE(text.find("decode 0.30000 J/generated token"), std::string::npos) << text;
  const nlohmann::json none =
      nlohmann::json::parse(FormatReportJson(c, s, {.note = "--metrics none"}));
  EXPECT_TRUE(none["results"]["energy"].is_null());
  EXPECT_EQ(none["results"]["energy_note"], "--metrics none");
}

}  // namespace
}  // namespace tokenfab::loadgen
