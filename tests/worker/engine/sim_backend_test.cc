#include "worker/engine/sim_backend.h"

#include <chrono>
#include <thread>

#include "gtest/gtest.h"
#include "tests/worker/engine/engine_test_util.h"
#include "worker/power/sim_power_meter.h"

namespace tokenfab {
namespace {

using engine_test::Collector;
using engine_test::Model;
using engine_test::Prompt;
using engine_test::Request;

// Every step costs `seconds` at `watts`; the shapes it saw are kept.
struct FixedCost {
  double seconds = 0.001, watts = 100;
  std::shared_ptr<std::vector<SimStepShape>> seen = std::make_shared<std::vector<SimStepShape>>();
  SimCostModel Model() const {
    return [*this](const SimStepShape& shape) {
      seen->push_back(shape);
      return SimStepCost{seconds, watts};
    };
  }
};

std::unique_ptr<SimBackend> Sim(const FixedCost& cost, int32_t blocks = 64) {
  SimBackendOptions o;
  o.num_kv_blocks = blocks;
  o.cost = cost.Model();
  return std::move(*SimBackend::Create(Model().config, o));
}

TEST(SimBackendTest, CreateChecksItsOptions) {
  SimBackendOptions o;
  o.cost = FixedCost().Model();
  EXPECT_EQ(SimBackend::Create(Model().config, o).status().code(),
            absl::StatusCode::kInvalidArgument);  // no blocks
  o.num_kv_blocks = 4;
  o.first_token = Model().config.vocab_size;
  EXPECT_EQ(SimBackend::Create(Model().config, o).status().code(),
            absl::StatusCode::kInvalidArgument);
  o.first_token = 0;
  o.cost = nullptr;
  EXPECT_EQ(SimBackend::Create(Model().config, o).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(SimBackendTest, StepTakesTheModelsTimeAndDrawsItsWatts) {
  FixedCost cost;
  cost.seconds = 0.05;
  cost.watts = 300;
  auto sim = Sim(cost);
  const std::vector<int32_t> prompt = Prompt(1, 20), table = {0, 1};
  const std::vector<SequenceStep> batch = {{prompt, 0, table, LogitsMode::kLast}};
  StepResult result;
  int layers_done = 0;
  const auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(sim->Forward(batch, &result, [&](int32_t) { ++layers_done; }).ok());
  const double took =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_GE(took, 0.05);
  EXPECT_LT(took, 0.5);
  EXPECT_EQ(layers_done, 1);
  EXPECT_DOUBLE_EQ(sim->step_seconds(), 0.05);
  EXPECT_DOUBLE_EQ(sim->step_joules(), 0.05 * 300);
  ASSERT_EQ(result.tokens.size(), 1u);
  EXPECT_TRUE(result.logits.empty());
  EXPECT_GE(result.tokens[0], 256);
  EXPECT_LT(result.tokens[0], Model().config.vocab_size);
}

TEST(SimBackendTest, TheCostModelSeesPromptChunksAndDecodes) {
  FixedCost cost;
  auto sim = Sim(cost);
  const std::vector<int32_t> chunk = Prompt(2, 20), one = {300}, t0 = {0, 1}, t1 = {2};
  const std::vector<SequenceStep> batch = {{chunk, 0, t0, LogitsMode::kNone},
                                           {one, 5, t1, LogitsMode::kLast}};
  StepResult result;
  ASSERT_TRUE(sim->Forward(batch, &result).ok());
  ASSERT_EQ(cost.seen->size(), 1u);
  const SimStepShape& shape = cost.seen->front();
  ASSERT_EQ(shape.prefill_chunks.size(), 1u);
  EXPECT_EQ(shape.prefill_chunks[0], std::make_pair(0, 20));
  EXPECT_EQ(shape.decode_contexts, std::vector<int32_t>{6});
  EXPECT_EQ(result.first_row, (std::vector<int32_t>{-1, 0}));
}

TEST(SimBackendTest, TokensFollowTheKvSoMovedKvGivesTheSameTokens) {
  FixedCost cost;
  auto a = Sim(cost), b = Sim(cost);
  const std::vector<int32_t> prompt = Prompt(3, 40), ta = {0, 1, 2}, tb = {7, 3, 9};
  StepResult ra, rb;
  ASSERT_TRUE(a->Forward({{{prompt, 0, ta, LogitsMode::kLast}}}, &ra).ok());
  // b gets the prompt's KV from a, then computes only the last position.
  std::vector<uint8_t> kv(static_cast<size_t>(SimBackend::Layout().PositionBytes()) * 39);
  ASSERT_TRUE(a->ReadKv(0, ta, 0, 39, kv).ok());
  ASSERT_TRUE(b->WriteKv(0, tb, 0, 39, kv).ok());
  const std::vector<int32_t> last = {prompt.back()};
  ASSERT_TRUE(b->Forward({{{last, 39, tb, LogitsMode::kLast}}}, &rb).ok());
  EXPECT_EQ(ra.tokens, rb.tokens);
  // KV that is not the prompt's (a lost or misplaced piece) changes the token.
  auto c = Sim(cost);
  kv[38 * 4] ^= 0x5a;
  ASSERT_TRUE(c->WriteKv(0, tb, 0, 39, kv).ok());
  StepResult rc;
  ASSERT_TRUE(c->Forward({{{last, 39, tb, LogitsMode::kLast}}}, &rc).ok());
  EXPECT_NE(ra.tokens, rc.tokens);
}

TEST(SimBackendTest, BadBatchesAndKvRangesAreRefused) {
  FixedCost cost;
  auto sim = Sim(cost, 4);
  const std::vector<int32_t> bad = {Model().config.vocab_size}, table = {0};
  StepResult result;
  EXPECT_EQ(sim->Forward({{{bad, 0, table, LogitsMode::kLast}}}, &result).code(),
            absl::StatusCode::kInvalidArgument);
  const std::vector<int32_t> ok = {1}, outside = {4};
  EXPECT_EQ(sim->Forward({{{ok, 0, outside, LogitsMode::kLast}}}, &result).code(),
            absl::StatusCode::kInvalidArgument);
  std::vector<uint8_t> kv(8);
  EXPECT_EQ(sim->ReadKv(1, table, 0, 2, kv).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(sim->ReadKv(0, table, 0, 3, kv).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(sim->WriteKv(0, outside, 0, 2, kv).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(sim->ReadKv(0, table, 0, 2, kv).ok());
  EXPECT_TRUE(cost.seen->empty());  // nothing was simulated for a refused step
}

// The whole engine over the simulated backend: deterministic, and the same
// tokens however the prompt is chunked.
TEST(SimBackendTest, EngineOutputIsDeterministicAndChunkingInvariant) {
  auto run = [](int32_t max_batched_tokens) {
    FixedCost cost;
    auto sim = Sim(cost, 128);
    EngineOptions o;
    o.scheduler.max_batched_tokens = max_batched_tokens;
    Collector c;
    Engine engine(sim.get(), o);
    for (int i = 0; i < 4; ++i) {
      std::string id = "r";  // (not "r" + to_string: GCC 12 warns falsely on it)
      id += std::to_string(i);
      EXPECT_TRUE(engine.Submit(Request(id, Prompt(10 + i, 50 + 13 * i), 24), c.For(id)).ok());
    }
    c.WaitFor(4);
    return c.results();
  };
  const auto whole = run(512), chunked = run(16);
  ASSERT_EQ(whole.size(), 4u);
  for (const auto& [id, r] : whole) {
    EXPECT_EQ(r.tokens.size(), 24u) << id;
    EXPECT_EQ(r.finish, internal::v1::WORKER_FINISH_LENGTH) << id;
    EXPECT_EQ(r.tokens, chunked.at(id).tokens) << id;
  }
  EXPECT_NE(whole.at("r0").tokens, whole.at("r1").tokens);
}

TEST(SimPowerMeterTest, IdleWattsBetweenStepsAndTheStepsJoules) {
  SimPowerMeter::Steps steps{0, 0};
  SimPowerMeter meter(20, [&] { return steps; });
  EXPECT_EQ(meter.source(), "sim");
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  steps = {50.0, 0.05};  // 50 ms of steps at 1000 W
  const double j = *meter.EnergyJoules();
  // idle 20 W for the wall time less 0.05 s, plus 50 J.
  EXPECT_GT(j, 50.0 + 20 * 0.049);
  EXPECT_LT(j, 50.0 + 20 * 0.5);
  steps = {0, 0};  // a reading never goes down
  EXPECT_GE(*meter.EnergyJoules(), j);
}

}  // namespace
}  // namespace tokenfab
