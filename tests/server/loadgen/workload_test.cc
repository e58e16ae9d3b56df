#include "server/loadgen/workload.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>

#include "tests/test_paths.h"
#include "worker/model_loader.h"

namespace tokenfab::loadgen {
namespace {

class BuildPromptsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string path = testing::DefaultModelPath();
    auto m = LoadModel(path, {.load_weights = false});
    if (m.ok()) model_ = std::move(*m).release();
  }
  static void TearDownTestSuite() {
    delete model_;
    model_ = nullptr;
  }
  void SetUp() override {
    if (!testing::RequireFile(testing::DefaultModelPath())) GTEST_SKIP();
    ASSERT_NE(model_, nullptr);
  }
  const Tokenizer& tok() { return *model_->tokenizer; }
  static LoadedModel* model_;
};
LoadedModel* BuildPromptsTest::model_ = nullptr;

TEST_F(BuildPromptsTest, EveryPromptHasExactlyTheAskedTokenCount) {
  for (int32_t isl : {8, 16, 17, 100, 128, 1000, 3000}) {
    auto prompts = BuildPrompts(tok(), 12, isl, /*seed=*/isl);
    ASSERT_TRUE(prompts.ok()) << prompts.status();
    ASSERT_EQ(prompts->size(), 12u);
    for (const std::string& p : *prompts) {
      EXPECT_EQ(tok().Encode(p, tok().add_bos_default()).size(), static_cast<size_t>(isl))
          << "isl " << isl << ": " << p.substr(0, 80);
    }
  }
}

TEST_F(BuildPromptsTest, PromptsDifferInTheirFirstBlock) {
  auto prompts = BuildPrompts(tok(), 64, 128, 1);
  ASSERT_TRUE(prompts.ok());
  std::set<std::vector<int32_t>> first_blocks;
  for (const std::string& p : *prompts) {
    std::vector<int32_t> ids = tok().Encode(p, tok().add_bos_default());
    ids.resize(16);
    first_blocks.insert(ids);
  }
  EXPECT_EQ(first_blocks.size(), 64u);
}

TEST_F(BuildPromptsTest, SameSeedSamePromptsOtherSeedOtherText) {
  auto a = BuildPrompts(tok(), 4, 64, 5);
  auto b = BuildPrompts(tok(), 4, 64, 5);
  auto c = BuildPrompts(tok(), 4, 64, 6);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ(*a, *b);
  EXPECT_NE(*a, *c);
}

TEST_F(BuildPromptsTest, RejectsTooShortPrompts) {
  EXPECT_FALSE(BuildPrompts(tok(), 1, 7, 0).ok());
}

TEST(ArrivalTimesTest, ClosedLoopSendsAllAtOnce) {
  const std::vector<double> t = ArrivalTimes(5, 0, 1);
  EXPECT_EQ(t, std::vector<double>(5, 0.0));
}

TEST(ArrivalTimesTest, PoissonGapsAverageOneOverRate) {
  const std::vector<double> t = ArrivalTimes(20001, 4.0, 3);
  ASSERT_EQ(t.size(), 20001u);
  EXPECT_EQ(t[0], 0);
  EXPECT_TRUE(std::is_sorted(t.begin(), t.end()));
  std::vector<double> gaps(t.size() - 1);
  for (size_t i = 1; i < t.size(); ++i) gaps[i - 1] = t[i] - t[i - 1];
  const double mean = std::accumulate(gaps.begin(), gaps.end(), 0.0) / gaps.size();
  double var = 0;
  for (double g : gaps) var += (g - mean) * (g - mean);
  var /= gaps.size();
  // Exponential(4): mean 0.25, standard deviation 0.25; 20000 samples put
  // the sample mean within 0.25/sqrt(20000) * 4 = 0.007 with near certainty.
  EXPECT_NEAR(mean, 0.25, 0.007);
  EXPECT_NEAR(std::sqrt(var), 0.25, 0.015);
  EXPECT_EQ(ArrivalTimes(10, 4.0, 3), ArrivalTimes(10, 4.0, 3));
  EXPECT_NE(ArrivalTimes(10, 4.0, 3), ArrivalTimes(10, 4.0, 4));
}

}  // namespace
}  // namespace tokenfab::loadgen
