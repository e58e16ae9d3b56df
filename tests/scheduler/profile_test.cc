// Hardware profiles: JSON round trip, every field checked on load, and the
// interpolation the planner reads between measured points.
#include "scheduler/profile.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tokenfab {
namespace {

using ::testing::HasSubstr;

Profile Sample() {
  Profile p;
  p.model = "m";
  p.architecture = "llama";
  p.device = "cpu";
  p.hardware = "test";
  p.power_source = "model";
  p.measured_at = "2026-11-22T00:00:00Z";
  p.threads = 2;
  p.kv_blocks = 1000;
  p.max_num_seqs = 32;
  p.max_batched_tokens = 512;
  p.idle_watts = 10;
  p.prefill = {{100, 1.0, 40}, {300, 2.0, 50}};
  p.decode = {{1, 100, 0.010, 30}, {1, 300, 0.020, 30}, {5, 100, 0.030, 40}, {5, 300, 0.060, 50}};
  return p;
}

TEST(ProfileTest, RoundTripsThroughJson) {
  const Profile p = Sample();
  absl::StatusOr<Profile> q = ParseProfile(ProfileToJson(p));
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_EQ(q->model, "m");
  EXPECT_EQ(q->kv_blocks, 1000);
  ASSERT_EQ(q->decode.size(), 4u);
  EXPECT_DOUBLE_EQ(q->decode[3].step_seconds, 0.060);
  EXPECT_THAT(ProfileToJson(p), HasSubstr("\"schema\": \"tokenfab.profile/1\""));
}

TEST(ProfileTest, InterpolatesBetweenAndExtrapolatesBeyondPoints) {
  const Profile p = Sample();
  EXPECT_DOUBLE_EQ(p.PrefillSeconds(200), 1.5);
  EXPECT_DOUBLE_EQ(p.PrefillSeconds(500), 3.0);  // the last segment extended
  EXPECT_DOUBLE_EQ(p.PrefillSeconds(1), 0.505);
  EXPECT_DOUBLE_EQ(p.PrefillWatts(200), 45);
  EXPECT_DOUBLE_EQ(p.DecodeStepSeconds(1, 200), 0.015);
  EXPECT_DOUBLE_EQ(p.DecodeStepSeconds(5, 200), 0.045);
  EXPECT_DOUBLE_EQ(p.DecodeStepSeconds(3, 200), 0.030);  // bilinear
  EXPECT_DOUBLE_EQ(p.DecodeWatts(5, 300), 50);
  EXPECT_THAT(p.DecodeBatches(), ::testing::ElementsAre(1, 5));
  EXPECT_THAT(p.DecodeContexts(), ::testing::ElementsAre(100, 300));
}

TEST(ProfileTest, RefusesBadProfilesNamingTheField) {
  const std::string good = ProfileToJson(Sample());
  auto with = [&](const std::string& from, const std::string& to) {
    std::string s = good;
    const size_t at = s.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    return s.replace(at, from.size(), to);
  };
  struct Case {
    std::string text, error;
  } cases[] = {
      {"[1, 2]", "not a JSON object"},
      {"{not json", "not a JSON object"},
      {with("tokenfab.profile/1", "tokenfab.profile/9"), "schema"},
      {with("\"threads\": 2", "\"threads\": \"two\""), "threads has the wrong type"},
      {with("\"threads\": 2", "\"threads\": 0"), "threads must be between"},
      {with("\"kv_blocks\": 1000", "\"kv_blocks\": -1"), "kv_blocks"},
      {with("\"prompt_tokens\": 300", "\"prompt_tokens\": 50"),
       "prefill[1].prompt_tokens must ascend"},
      {with("\"seconds\": 1.0", "\"seconds\": -1.0"), "prefill[0].seconds must be a positive"},
      {with("\"step_seconds\": 0.06", "\"step_seconds\": 0"), "decode[3].step_seconds"},
      {with("\"batch\": 5,\n      \"context\": 300", "\"batch\": 6,\n      \"context\": 300"),
       "every (batch, context) pair"},
      {with("\"idle_watts\": 10.0", "\"idle_watts\": -3"), "idle_watts"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<Profile> p = ParseProfile(c.text);
    EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument) << c.error;
    EXPECT_THAT(p.status().message(), HasSubstr(c.error)) << c.text.substr(0, 200);
  }
  EXPECT_EQ(ReadProfile("/nonexistent/profile.json").status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace tokenfab
