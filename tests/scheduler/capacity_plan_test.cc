// The capacity model on a profile written by hand, where every figure can
// be worked out on paper: pool sizes, the binding constraint, watts, tokens
// per joule and cost; impossible targets and budgets refused with reasons.
#include "scheduler/capacity_plan.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/test_paths.h"

namespace tokenfab {
namespace {

using ::testing::HasSubstr;

// tests/data/profile/paper.json: prefill 0.25 s for 128 tokens, 0.5 s for
// 256, at 100 W; decode 10 ms + 2 ms per sequence whatever the context, at
// 80 W; 20 W idle.
Profile Paper() { return *ReadProfile(testing::TestDataPath("profile/paper.json")); }

PlanRequest Load() {
  PlanRequest r;
  r.rate = 4;
  r.isl = 256;
  r.osl = 100;
  r.ttft_seconds = 2;
  r.itl_seconds = 0.05;
  return r;
}

TEST(CapacityPlanTest, SizesBothPoolsFromTheProfile) {
  absl::StatusOr<CapacityPlan> plan = PlanCapacity(Paper(), Load());
  ASSERT_TRUE(plan.ok()) << plan.status();
  const DeploymentPlan& d = plan->disaggregated;
  // Decode: 10 + 2b ms <= 50 ms -> b <= 20, the most tokens per joule at 80 W.
  EXPECT_EQ(d.batch_cap, 20);
  // Little: 4 req/s * 100 tokens * 50 ms = 20 sequences in decode: one worker.
  EXPECT_EQ(d.decode_workers, 1);
  EXPECT_DOUBLE_EQ(d.decode_batch, 20);
  // Prefill: 4 * 0.5 s = 2 busy workers -> 3; at rho 2/3 the M/D/1 wait is 0.5 s.
  EXPECT_EQ(d.prefill_workers, 3);
  EXPECT_NEAR(d.ttft_seconds, 0.5 + 0.5 + 0.05, 1e-9);
  EXPECT_EQ(d.binding, "prefill: throughput; decode: ITL");
  // Watts: 3 * (20 + 2/3 * 80) + 80 = 300 W; 400 tokens/s.
  EXPECT_NEAR(d.kw, 0.300, 1e-9);
  EXPECT_NEAR(d.tokens_per_joule, 400.0 / 300.0, 1e-9);
  EXPECT_NEAR(d.usd_per_hour, 0.3 * 0.12 + 4 * 2.5, 1e-9);
  EXPECT_NEAR(d.usd_per_million_tokens, (0.3 * 0.12 + 4 * 2.5) / (400 * 3600.0) * 1e6, 1e-9);
  EXPECT_DOUBLE_EQ(plan->output_tokens_per_second, 400);
  ASSERT_TRUE(plan->aggregated.has_value()) << plan->aggregated_infeasible;
  EXPECT_LE(plan->aggregated->ttft_seconds, 2.0);
  EXPECT_LE(plan->aggregated->itl_seconds, 0.05);
  EXPECT_GE(plan->aggregated->workers, 3);  // 2 workers' worth of prompts alone
}

TEST(CapacityPlanTest, ATighterTtftAddsPrefillWorkers) {
  PlanRequest r = Load();
  r.ttft_seconds = 0.81;  // 3 workers give 1.05 s; 4 give 0.25 + 0.5 + 0.05 s
  absl::StatusOr<CapacityPlan> plan = PlanCapacity(Paper(), r);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->disaggregated.prefill_workers, 4);
  EXPECT_THAT(plan->disaggregated.binding, HasSubstr("prefill: TTFT"));
}

TEST(CapacityPlanTest, KvCapacityCapsTheBatch) {
  Profile p = Paper();
  p.kv_blocks = 5 * ((256 + 100 + 15) / 16);  // five sequences
  absl::StatusOr<CapacityPlan> plan = PlanCapacity(p, Load());
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->disaggregated.batch_cap, 5);
  EXPECT_THAT(plan->disaggregated.binding, HasSubstr("decode: KV cache capacity"));
  // 4 * 100 * 20 ms = 8 sequences in decode, 5 per worker.
  EXPECT_EQ(plan->disaggregated.decode_workers, 2);
}

TEST(CapacityPlanTest, ImpossibleTargetsAndBudgetsSayWhy) {
  PlanRequest r = Load();
  r.itl_seconds = 0.005;
  absl::StatusOr<CapacityPlan> plan = PlanCapacity(Paper(), r);
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(plan.status().message(), HasSubstr("ITL target 5.0 ms"));
  r = Load();
  r.ttft_seconds = 0.4;
  plan = PlanCapacity(Paper(), r);
  EXPECT_THAT(plan.status().message(), HasSubstr("takes 500.0 ms to prefill"));
  r = Load();
  r.power_budget_kw = 0.1;
  plan = PlanCapacity(Paper(), r);
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(plan.status().message(), HasSubstr("power budget of 0.1 kW"));
  r = Load();
  r.rate = -1;
  EXPECT_EQ(PlanCapacity(Paper(), r).status().code(), absl::StatusCode::kInvalidArgument);
  r = Load();
  r.osl = 0;
  EXPECT_EQ(PlanCapacity(Paper(), r).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(CapacityPlanTest, DurationsTakeUnits) {
  EXPECT_DOUBLE_EQ(*ParseDuration("300ms"), 0.3);
  EXPECT_DOUBLE_EQ(*ParseDuration("2s"), 2.0);
  EXPECT_DOUBLE_EQ(*ParseDuration("1.5s"), 1.5);
  EXPECT_DOUBLE_EQ(*ParseDuration("250us"), 250e-6);
  EXPECT_DOUBLE_EQ(*ParseDuration("2m"), 120.0);
  for (const char* bad : {"", "2", "s", "-1s", "0ms", "3 parsecs", "1e999s", "abcms"}) {
    EXPECT_FALSE(ParseDuration(bad).ok()) << bad;
  }
}

}  // namespace
}  // namespace tokenfab
