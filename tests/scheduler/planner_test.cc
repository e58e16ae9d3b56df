// The planner's decision step on the hand-written profile
// (tests/data/profile/paper.json), where the right fleet for a load is
// known from the capacity model: steady load, a doubling that settles
// within three intervals, the scale-down stabilization window, latency
// corrections.
#include "scheduler/planner.h"

#include "gtest/gtest.h"
#include "tests/test_paths.h"

namespace tokenfab {
namespace {

Profile Paper() { return *ReadProfile(testing::TestDataPath("profile/paper.json")); }

std::unique_ptr<Planner> Make(PlannerOptions o = {}) {
  o.ttft_seconds = 2;
  o.itl_seconds = 0.05;
  auto p = Planner::Create(Paper(), o);
  EXPECT_TRUE(p.ok()) << p.status();
  return std::move(*p);
}

IntervalLoad Load(double rate, double seconds = 10) {
  return {.seconds = seconds,
          .requests = static_cast<int64_t>(rate * seconds),
          .mean_isl = 256,
          .mean_osl = 100,
          .finished = static_cast<int64_t>(rate * seconds)};
}

DeploymentPlan Expected(double rate) {
  PlanRequest r{.rate = rate, .isl = 256, .osl = 100, .ttft_seconds = 2, .itl_seconds = 0.05};
  return PlanCapacity(Paper(), r)->disaggregated;
}

TEST(PlannerTest, NoLoadKeepsOneWorkerInEachPool) {
  auto planner = Make();
  absl::StatusOr<PlannerDecision> d = planner->Step({.seconds = 10});
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->prefill_workers, 1);
  EXPECT_EQ(d->decode_workers, 1);
  EXPECT_FALSE(d->sized_from_load);
  EXPECT_EQ(d->binding, "no load yet");
}

TEST(PlannerTest, SteadyLoadGetsTheCapacityPlansFleet) {
  auto planner = Make();
  PlannerDecision d;
  for (int i = 0; i < 10; ++i) d = *planner->Step(Load(4));
  const DeploymentPlan want = Expected(4);
  EXPECT_EQ(d.prefill_workers, want.prefill_workers);
  EXPECT_EQ(d.decode_workers, want.decode_workers);
  EXPECT_EQ(d.decode_batch_cap, 20);  // the most tokens per joule under 50 ms ITL
  EXPECT_NEAR(d.predicted_rate, 4, 1e-6);
  EXPECT_GT(d.tokens_per_joule, 0);
}

TEST(PlannerTest, ADoublingOfTheRateSettlesWithinThreeIntervals) {
  for (const char* predictor : {"holt", "moving_average"}) {
    PlannerOptions o;
    o.predictor = predictor;
    auto planner = Make(o);
    for (int i = 0; i < 20; ++i) ASSERT_TRUE(planner->Step(Load(3)).ok());
    std::vector<PlannerDecision> after;
    for (int i = 0; i < 15; ++i) after.push_back(*planner->Step(Load(6)));
    const DeploymentPlan want = Expected(6);
    // From the third interval on, the recommendation is the new load's and stays.
    for (size_t i = 2; i < after.size(); ++i) {
      EXPECT_EQ(after[i].prefill_workers, want.prefill_workers) << predictor << " interval " << i;
      EXPECT_EQ(after[i].decode_workers, want.decode_workers) << predictor << " interval " << i;
    }
    EXPECT_GT(want.prefill_workers, Expected(3).prefill_workers);
  }
}

TEST(PlannerTest, ScaleDownWaitsForTheSmallerFleetToHold) {
  PlannerOptions o;
  o.predictor = "moving_average";
  o.scale_down_intervals = 3;
  auto planner = Make(o);
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(planner->Step(Load(6)).ok());
  const PlannerDecision high = *planner->last();
  // MA(3) falls over three intervals; the fleet follows only once the
  // high sizing has left the three-interval window.
  std::vector<int64_t> prefill;
  for (int i = 0; i < 10; ++i) prefill.push_back(planner->Step(Load(1))->prefill_workers);
  EXPECT_EQ(prefill[0], high.prefill_workers);
  EXPECT_EQ(prefill[1], high.prefill_workers);
  EXPECT_LT(prefill[2], high.prefill_workers);
  EXPECT_EQ(prefill.back(), Expected(1).prefill_workers);
  for (size_t i = 1; i < prefill.size(); ++i) EXPECT_LE(prefill[i], prefill[i - 1]);
}

// A load that falls for three intervals in a row shrinks each pool only to
// the largest size of the window, not to the last interval's: a lull that
// Poisson arrivals make over a short interval does not empty the pools.
TEST(PlannerTest, ScaleDownGoesNoLowerThanTheWholeWindowWanted) {
  PlannerOptions o;
  o.predictor = "moving_average";
  o.moving_average_window = 1;  // each interval sized from its own load
  o.scale_down_intervals = 3;
  auto planner = Make(o);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(planner->Step(Load(8)).ok());
  ASSERT_GT(Expected(6).prefill_workers, Expected(2).prefill_workers);
  EXPECT_EQ(planner->Step(Load(6))->prefill_workers, Expected(8).prefill_workers);
  EXPECT_EQ(planner->Step(Load(4))->prefill_workers, Expected(8).prefill_workers);
  const PlannerDecision d = *planner->Step(Load(2));
  EXPECT_EQ(d.prefill_workers, Expected(6).prefill_workers);
  EXPECT_EQ(d.decode_workers, Expected(6).decode_workers);
  // One busy interval in the lull goes up at once and holds the window.
  EXPECT_EQ(planner->Step(Load(8))->prefill_workers, Expected(8).prefill_workers);
  EXPECT_EQ(planner->Step(Load(2))->prefill_workers, Expected(8).prefill_workers);
  EXPECT_EQ(planner->Step(Load(2))->prefill_workers, Expected(8).prefill_workers);
  EXPECT_EQ(planner->Step(Load(2))->prefill_workers, Expected(2).prefill_workers);
}

TEST(PlannerTest, LatencyAboveThePredictionTightensTheTargets) {
  auto planner = Make();
  PlannerDecision d;
  for (int i = 0; i < 5; ++i) d = *planner->Step(Load(4));
  const int64_t before = d.prefill_workers;
  for (int i = 0; i < 10; ++i) {
    IntervalLoad l = Load(4);
    l.observed_ttft = 2 * planner->last()->predicted_ttft;  // reality is twice as slow
    d = *planner->Step(l);
  }
  EXPECT_GT(d.ttft_correction, 1.5);
  EXPECT_GT(d.prefill_workers, before);
  EXPECT_LE(d.predicted_ttft, 2.0 / d.ttft_correction + 1e-9);
}

TEST(PlannerTest, ImpossibleTargetsKeepTheLastDecision) {
  auto planner = Make();
  ASSERT_TRUE(planner->Step(Load(4)).ok());
  const PlannerDecision last = *planner->last();
  IntervalLoad l = Load(4);
  l.mean_isl = 100000;  // a prompt that alone takes far more than the TTFT target
  for (int i = 0; i < 5; ++i) {
    absl::StatusOr<PlannerDecision> d = planner->Step(l);
    if (!d.ok()) {
      EXPECT_EQ(d.status().code(), absl::StatusCode::kFailedPrecondition);
      EXPECT_EQ(planner->last()->prefill_workers, last.prefill_workers);
      return;
    }
  }
  FAIL() << "a 100000-token prompt should be beyond the 2 s TTFT target";
}

TEST(PlannerTest, AnUnreachableCorrectionIsDroppedNotFatal) {
  PlannerOptions o;
  o.ttft_seconds = 2;
  o.itl_seconds = 0.02;
  auto planner = std::move(*Planner::Create(Paper(), o));
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(planner->Step(Load(4)).ok());
  // A backlog makes ITL look 4x the model's: 0.02 / 2 (the largest
  // correction) is below one sequence's step (12 ms), so the corrected
  // target is unreachable.
  PlannerDecision d;
  for (int i = 0; i < 8; ++i) {
    IntervalLoad l = Load(4);
    l.observed_itl = 4 * planner->last()->predicted_itl;
    absl::StatusOr<PlannerDecision> step = planner->Step(l);
    ASSERT_TRUE(step.ok()) << step.status();
    d = *step;
  }
  EXPECT_GT(d.itl_correction, 1.9);
  EXPECT_NE(d.binding.find("latency correction dropped"), std::string::npos) << d.binding;
  PlanRequest r{.rate = 4, .isl = 256, .osl = 100, .ttft_seconds = 2, .itl_seconds = 0.02};
  EXPECT_EQ(d.decode_workers, PlanCapacity(Paper(), r)->disaggregated.decode_workers);
}

TEST(PlannerTest, LatencyWhileTheFleetWasShortLeavesTheCorrectionAlone) {
  auto planner = Make();
  ASSERT_TRUE(planner->Step(Load(4)).ok());
  IntervalLoad l = Load(4);
  l.observed_ttft = 10 * planner->last()->predicted_ttft;
  l.fleet_as_decided = false;
  EXPECT_EQ(planner->Step(l)->ttft_correction, 1.0);
  l.fleet_as_decided = true;
  EXPECT_GT(planner->Step(l)->ttft_correction, 1.0);
}

TEST(PlannerTest, TooFewFinishedRequestsLeaveTheCorrectionAlone) {
  auto planner = Make();
  ASSERT_TRUE(planner->Step(Load(4)).ok());
  IntervalLoad l = Load(4);
  l.observed_ttft = 10 * planner->last()->predicted_ttft;
  l.finished = 3;
  EXPECT_EQ(planner->Step(l)->ttft_correction, 1.0);
}

TEST(PlannerTest, AggregatedModeSizesOnePool) {
  PlannerOptions o;
  o.aggregated = true;
  auto planner = Make(o);
  EXPECT_EQ(planner->Step({.seconds = 10})->prefill_workers, 0);
  PlannerDecision d;
  for (int i = 0; i < 5; ++i) d = *planner->Step(Load(2));
  PlanRequest r{.rate = 2, .isl = 256, .osl = 100, .ttft_seconds = 2, .itl_seconds = 0.05};
  const auto plan = PlanCapacity(Paper(), r);
  ASSERT_TRUE(plan.ok() && plan->aggregated);
  EXPECT_EQ(d.prefill_workers, 0);
  EXPECT_EQ(d.decode_workers, plan->aggregated->workers);
}

TEST(PlannerTest, BadOptionsAndIntervalsAreRefused) {
  PlannerOptions o;
  o.ttft_seconds = 0;
  EXPECT_FALSE(Planner::Create(Paper(), o).ok());
  o = {};
  o.predictor = "tarot";
  EXPECT_FALSE(Planner::Create(Paper(), o).ok());
  auto planner = Make();
  EXPECT_FALSE(planner->Step({.seconds = 0, .requests = 3}).ok());
  EXPECT_FALSE(planner->Step({.seconds = 10, .requests = -1}).ok());
}

}  // namespace
}  // namespace tokenfab
