// The planner's load predictors on series with a known next value: flat,
// a ramp (where the moving average lags and Holt does not), a step (the
// arrival rate doubling), and values that must not poison them.
#include "scheduler/load_predictor.h"

#include <cmath>

#include "gtest/gtest.h"

namespace tokenfab {
namespace {

TEST(LoadPredictorTest, FlatLoadIsPredictedFlat) {
  for (const char* kind : {"moving_average", "holt"}) {
    auto p = CreateLoadPredictor(kind);
    ASSERT_TRUE(p.ok()) << p.status();
    EXPECT_EQ((*p)->Predict(), 0.0) << kind;
    for (int i = 0; i < 10; ++i) (*p)->Observe(7.0);
    EXPECT_NEAR((*p)->Predict(), 7.0, 1e-9) << kind;
  }
}

TEST(LoadPredictorTest, HoltFollowsARampTheMovingAverageLags) {
  auto ma = *CreateLoadPredictor("moving_average", 5);
  auto holt = *CreateLoadPredictor("holt");
  // 10, 11, ..., 39: the next value is 40.
  for (int i = 0; i < 30; ++i) {
    ma->Observe(10.0 + i);
    holt->Observe(10.0 + i);
  }
  const double ma_error = std::abs(ma->Predict() - 40.0);
  const double holt_error = std::abs(holt->Predict() - 40.0);
  EXPECT_NEAR(ma_error, 3.0, 1e-9);  // the mean of 35..39 is 37
  EXPECT_LT(holt_error, ma_error / 2) << "holt predicts " << holt->Predict();
}

TEST(LoadPredictorTest, AStepIsTrackedWithinAFewIntervals) {
  auto holt = *CreateLoadPredictor("holt");
  auto ma = *CreateLoadPredictor("moving_average", 3);
  for (int i = 0; i < 20; ++i) holt->Observe(10), ma->Observe(10);
  for (int i = 0; i < 3; ++i) holt->Observe(20), ma->Observe(20);
  // Three intervals after the rate doubled, both are within 15% of it.
  EXPECT_NEAR(holt->Predict(), 20.0, 3.0);
  EXPECT_NEAR(ma->Predict(), 20.0, 1e-9);
  // The damped trend does not run away once the step is over.
  for (int i = 0; i < 20; ++i) holt->Observe(20);
  EXPECT_NEAR(holt->Predict(), 20.0, 0.2);
}

TEST(LoadPredictorTest, NeverNegativeAndIgnoresNonFiniteValues) {
  auto holt = *CreateLoadPredictor("holt");
  for (double v : {10.0, 5.0, 1.0, 0.0, 0.0}) holt->Observe(v);  // falling to zero
  EXPECT_GE(holt->Predict(), 0.0);
  auto ma = *CreateLoadPredictor("moving_average", 2);
  ma->Observe(4);
  ma->Observe(std::nan(""));
  ma->Observe(INFINITY);
  EXPECT_EQ(ma->Predict(), 4.0);
}

TEST(LoadPredictorTest, BadKindsAndParametersAreRefused) {
  EXPECT_EQ(CreateLoadPredictor("crystal_ball").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(CreateLoadPredictor("moving_average", 0).ok());
  EXPECT_FALSE(CreateLoadPredictor("holt", 5, {.alpha = 0}).ok());
  EXPECT_FALSE(CreateLoadPredictor("holt", 5, {.beta = 1.5}).ok());
  EXPECT_FALSE(CreateLoadPredictor("holt", 5, {.phi = std::nan("")}).ok());
}

}  // namespace
}  // namespace tokenfab
