#include "worker/engine/sampler.h"

#include <cmath>
#include <limits>
#include <map>
#include <vector>

#include "gtest/gtest.h"

namespace tokenfab {
namespace {

std::vector<float> Logits() { return {1.0f, 3.0f, 2.0f, 3.0f, -1.0f, 0.5f}; }

TEST(SamplerTest, GreedyPicksTheLowestIdAmongTies) {
  Sampler s({}, {});
  EXPECT_EQ(s.Sample(Logits()), 1);
}

TEST(SamplerTest, RepetitionPenaltyCoversPromptAndOutput) {
  SamplingOptions o;
  o.repetition_penalty = 2.0f;
  // Token 1 is in the prompt: 3 -> 1.5, so token 3 (3.0) wins.
  Sampler s(o, std::vector<int32_t>{1});
  EXPECT_EQ(s.Sample(Logits()), 3);
  // Now 3 is penalised too (output): 2 (2.0) wins.
  EXPECT_EQ(s.Sample(Logits()), 2);
  // Negative logits are multiplied: token 4 stays last.
}

TEST(SamplerTest, PresenceAndFrequencyPenaltiesCountOutputOnly) {
  SamplingOptions o;
  o.frequency_penalty = 0.6f;
  Sampler s(o, std::vector<int32_t>{1, 1, 1});  // the prompt does not count
  EXPECT_EQ(s.Sample(Logits()), 1);             // 3.0
  EXPECT_EQ(s.Sample(Logits()), 3);             // 1 is now 2.4
  EXPECT_EQ(s.Sample(Logits()), 1);             // 2.4 vs 3 now at 2.4: tie -> lower id
  EXPECT_EQ(s.Sample(Logits()), 3);             // 1 at 1.8, 3 at 2.4
  SamplingOptions p;
  p.presence_penalty = 1.5f;
  Sampler t(p, {});
  EXPECT_EQ(t.Sample(Logits()), 1);
  EXPECT_EQ(t.Sample(Logits()), 3);
  EXPECT_EQ(t.Sample(Logits()), 2);  // 1 and 3 both at 1.5 < 2
}

TEST(SamplerTest, SameSeedSameOutputs) {
  SamplingOptions o;
  o.temperature = 1.0f;
  o.seed = 1234;
  std::vector<float> logits(1000);
  for (int i = 0; i < 1000; ++i) logits[i] = std::sin(i * 0.37f) * 2;
  Sampler a(o, {}), b(o, {});
  std::vector<int32_t> ra, rb;
  for (int i = 0; i < 50; ++i) {
    ra.push_back(a.Sample(logits));
    rb.push_back(b.Sample(logits));
  }
  EXPECT_EQ(ra, rb);
  o.seed = 99;
  Sampler c(o, {});
  std::vector<int32_t> rc;
  for (int i = 0; i < 50; ++i) rc.push_back(c.Sample(logits));
  EXPECT_NE(ra, rc);
}

// Draws many samples and checks the empirical distribution.
std::map<int32_t, int> Histogram(const SamplingOptions& o, const std::vector<float>& logits, int n) {
  std::map<int32_t, int> h;
  Sampler s(o, {});
  for (int i = 0; i < n; ++i) {
    // A fresh sampler per draw would repeat the seed; one sampler keeps
    // drawing. No penalties are set, so history does not matter.
    ++h[s.Sample(logits)];
  }
  return h;
}

TEST(SamplerTest, TemperatureFollowsTheSoftmax) {
  SamplingOptions o;
  o.temperature = 1.0f;
  o.seed = 7;
  const std::vector<float> logits = {0.0f, std::log(3.0f)};  // p = 1/4, 3/4
  auto h = Histogram(o, logits, 20000);
  EXPECT_NEAR(h[1] / 20000.0, 0.75, 0.015);
  o.temperature = 0.5f;  // p ∝ 1, 9
  h = Histogram(o, logits, 20000);
  EXPECT_NEAR(h[1] / 20000.0, 0.9, 0.01);
}

TEST(SamplerTest, TopKTopPAndMinPRestrictTheCandidates) {
  const std::vector<float> logits = {std::log(0.4f), std::log(0.3f), std::log(0.2f), std::log(0.1f)};
  SamplingOptions o;
  o.temperature = 1.0f;
  o.seed = 3;
  o.top_k = 2;
  auto h = Histogram(o, logits, 5000);
  EXPECT_EQ(h.count(2) + h.count(3), 0u);
  EXPECT_NEAR(h[0] / 5000.0, 0.4 / 0.7, 0.03);

  o.top_k = 0;
  o.top_p = 0.65f;  // 0.4 + 0.3 >= 0.65
  h = Histogram(o, logits, 5000);
  EXPECT_EQ(h.count(2) + h.count(3), 0u);

  o.top_p = 1.0f;
  o.min_p = 0.4f;  // keep p >= 0.16: tokens 0, 1, 2
  h = Histogram(o, logits, 5000);
  EXPECT_EQ(h.count(3), 0u);
  EXPECT_GT(h[2], 0);
}

TEST(SamplerTest, TinyTemperatureIsGreedy) {
  SamplingOptions o;
  o.temperature = 1e-38f;
  o.min_p = 0.1f;
  o.seed = 1;
  Sampler s(o, {});
  EXPECT_EQ(s.Sample(Logits()), 1);
}

TEST(SamplerTest, NonFiniteLogitsNeverWin) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<float> with_nan = {nan, 0.5f, nan, 2.0f, nan};
  for (float t : {0.0f, 1.0f}) {
    SamplingOptions o;
    o.temperature = t;
    o.top_p = 0.9f;
    o.min_p = 0.05f;
    o.seed = 5;
    Sampler s(o, {});
    for (int i = 0; i < 20; ++i) {
      const int32_t tok = s.Sample(with_nan);
      EXPECT_TRUE(tok == 1 || tok == 3) << tok;
    }
    // Every logit -inf: a token is still returned, in range.
    Sampler all(o, {});
    const int32_t tok = all.Sample(std::vector<float>(4, -inf));
    EXPECT_GE(tok, 0);
    EXPECT_LT(tok, 4);
  }
}

TEST(SamplerTest, TopLogprobsAreNormalised) {
  const std::vector<float> logits = {0.0f, 1.0f, 2.0f};
  auto top = TopLogprobs(logits, 2);
  ASSERT_EQ(top.size(), 2u);
  EXPECT_EQ(top[0].token, 2);
  EXPECT_EQ(top[1].token, 1);
  const double z = std::log(1 + std::exp(1.0) + std::exp(2.0));
  EXPECT_NEAR(top[0].logprob, 2.0 - z, 1e-6);
  EXPECT_NEAR(TokenLogprob(logits, 0), -z, 1e-6);
}

}  // namespace
}  // namespace tokenfab
