// The continuous-batching engine on a real (tiny) model: concurrent requests
// produce exactly what each produces alone, cancellation and preemption free
// every block, the prefix cache serves repeated prompts, and bad or excess
// requests are refused.
#include "worker/engine/engine.h"

#include <random>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "common/strings.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/test_paths.h"
#include "tests/worker/engine/engine_test_util.h"
#include "worker/engine/cpu_backend.h"
#include "worker/engine/single_sequence.h"
#include "worker/model/gguf_file.h"
#include "worker/model/model_config.h"
#include "worker/model/model_weights.h"

namespace tokenfab {
namespace {

using namespace engine_test;  // NOLINT: the helpers are this test's vocabulary

TEST(EngineTest, ConcurrentRequestsGiveWhatEachGivesAlone) {
  auto backend = TinyBackend(256);
  Collector c;
  Engine engine(backend.get(), {.scheduler = {.max_num_seqs = 8, .max_batched_tokens = 48}});
  for (int i = 0; i < 12; ++i) {
    const std::string id = StrCat("r", i);
    ASSERT_TRUE(engine.Submit(Request(id, Prompt(i, 10 + 7 * i), 20), c.For(id)).ok());
  }
  c.WaitFor(12);
  auto results = c.results();
  for (int i = 0; i < 12; ++i) {
    const auto& r = results[StrCat("r", i)];
    EXPECT_EQ(r.finish, internal::v1::WORKER_FINISH_LENGTH);
    EXPECT_EQ(r.tokens, Alone(Prompt(i, 10 + 7 * i), 20)) << "request " << i;
    EXPECT_EQ(r.final.completion_tokens(), 20);
    EXPECT_EQ(r.final.prompt_tokens(), 10 + 7 * i);
  }
  EXPECT_EQ(engine.Stats().kv_blocks_used, 0);
}

TEST(EngineTest, CancellingAThirdMidStreamFreesEveryBlock) {
  auto backend = TinyBackend(512);
  Collector c;
  Engine engine(backend.get(), {.scheduler = {.max_num_seqs = 16, .max_batched_tokens = 64}});
  c.on_output_ = [&](const std::string& id, const WorkerOutput& out) {
    // Every third request is cancelled as soon as its first token arrives.
    const int n = std::stoi(id.substr(1));
    if (n % 3 == 0 && out.finish() == internal::v1::WORKER_FINISH_NONE) engine.Cancel(id);
  };
  for (int i = 0; i < 100; ++i) {
    const std::string id = StrCat("r", i);
    ASSERT_TRUE(engine.Submit(Request(id, Prompt(100 + i, 20 + i % 30), 12), c.For(id)).ok());
  }
  c.WaitFor(100);
  int cancelled = 0;
  for (const auto& [id, r] : c.results()) {
    const int n = std::stoi(id.substr(1));
    if (n % 3 == 0) {
      EXPECT_EQ(r.finish, internal::v1::WORKER_FINISH_CANCELLED) << id;
      EXPECT_LT(r.tokens.size(), 12u) << id;
      ++cancelled;
    } else {
      EXPECT_EQ(r.finish, internal::v1::WORKER_FINISH_LENGTH) << id;
      EXPECT_EQ(r.tokens.size(), 12u) << id;
    }
  }
  EXPECT_EQ(cancelled, 34);
  const EngineStats s = engine.Stats();
  EXPECT_EQ(s.kv_blocks_used, 0);
  EXPECT_EQ(s.running + s.waiting, 0);
}

TEST(EngineTest, PreemptedRequestsResumeAndFinishUnchanged) {
  auto backend = TinyBackend(12);  // far fewer blocks than the requests want together
  Collector c;
  Engine engine(backend.get(), {.scheduler = {.max_num_seqs = 8, .max_batched_tokens = 64}});
  for (int i = 0; i < 6; ++i) {
    const std::string id = StrCat("r", i);
    ASSERT_TRUE(engine.Submit(Request(id, Prompt(200 + i, 20), 40), c.For(id)).ok());
  }
  c.WaitFor(6);
  auto results = c.results();
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(results[StrCat("r", i)].tokens, Alone(Prompt(200 + i, 20), 40)) << i;
  }
  const EngineStats s = engine.Stats();
  EXPECT_GT(s.preemptions, 0);
  EXPECT_EQ(s.kv_blocks_used, 0);
}

TEST(EngineTest, RepeatedPromptIsServedFromThePrefixCache) {
  auto backend = TinyBackend(64);
  Collector c;
  Engine engine(backend.get(), {});
  const std::vector<int32_t> prompt = Prompt(7, 50);
  ASSERT_TRUE(engine.Submit(Request("a", prompt, 4), c.For("a")).ok());
  c.WaitFor(1);
  ASSERT_TRUE(engine.Submit(Request("b", prompt, 4), c.For("b")).ok());
  c.WaitFor(2);
  auto results = c.results();
  EXPECT_EQ(results["a"].final.cached_tokens(), 0);
  EXPECT_EQ(results["b"].final.cached_tokens(), 48);  // 3 full blocks of the 50
  EXPECT_EQ(results["a"].tokens, results["b"].tokens);
  EXPECT_GT(engine.Stats().prefix_hits, 0);
}

TEST(EngineTest, RefusesBadAndExcessRequests) {
  auto backend = TinyBackend(8);
  Collector c;
  // The tiny model finishes a request in a millisecond or two: hold the
  // engine thread at q1's first output so q1 stays in flight while the test
  // submits duplicates and fills the queue.
  absl::Notification release;
  c.on_output_ = [&, held = false](const std::string& id, const WorkerOutput&) mutable {
    if (id == "q1" && !held) {
      held = true;
      release.WaitForNotification();
    }
  };
  Engine engine(backend.get(),
                {.scheduler = {.max_num_seqs = 1, .max_batched_tokens = 16, .max_queue = 2}});
  struct Release {
    absl::Notification* n;
    ~Release() { n->Notify(); }  // before the engine joins its thread, even on a failed ASSERT
  } unblock{&release};
  auto code = [&](const WorkerRequest& r) {
    return engine.Submit(r, c.For(r.request_id())).code();
  };
  EXPECT_EQ(code(Request("e", {}, 4)), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(Request("v", {1, 512}, 4)), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(Request("m", {1, 2}, 0)), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(Request("c", Prompt(1, 200), 100)),
            absl::StatusCode::kInvalidArgument);  // > context
  EXPECT_EQ(code(Request("k", Prompt(1, 100), 60)),
            absl::StatusCode::kInvalidArgument);  // > 8 blocks
  ASSERT_TRUE(engine.Submit(Request("q1", Prompt(2, 10), 100), c.For("q1")).ok());
  EXPECT_EQ(code(Request("q1", Prompt(2, 10), 10)), absl::StatusCode::kAlreadyExists);
  ASSERT_TRUE(engine.Submit(Request("q2", Prompt(3, 10), 100), c.For("q2")).ok());
  // q1 runs (or is about to), q2 waits, the queue holds two: at most one more fits.
  int refused = 0;
  for (int i = 0; i < 3; ++i) {
    refused +=
        code(Request(StrCat("x", i), Prompt(4, 10), 100)) == absl::StatusCode::kResourceExhausted;
  }
  EXPECT_GE(refused, 2);
  for (const std::string id : {"q1", "q2", "x0", "x1", "x2"}) engine.Cancel(id);
}

TEST(EngineTest, APassedDeadlineCancels) {
  auto backend = TinyBackend(64);
  Collector c;
  Engine engine(backend.get(), {});
  WorkerRequest r = Request("d", Prompt(9, 20), 200);
  r.set_deadline_unix_ms(1);  // 1970
  ASSERT_TRUE(engine.Submit(r, c.For("d")).ok());
  c.WaitFor(1);
  auto results = c.results();
  EXPECT_EQ(results["d"].finish, internal::v1::WORKER_FINISH_CANCELLED);
}

TEST(EngineTest, StopTokenEndsTheRequest) {
  const std::vector<int32_t> alone = Alone(Prompt(11, 15), 10);
  auto backend = TinyBackend(64);
  Collector c;
  Engine engine(backend.get(), {});
  WorkerRequest r = Request("s", Prompt(11, 15), 10);
  r.add_stop_token_ids(alone[3]);
  ASSERT_TRUE(engine.Submit(r, c.For("s")).ok());
  c.WaitFor(1);
  auto results = c.results();
  const auto& got = results["s"];
  EXPECT_EQ(got.finish, internal::v1::WORKER_FINISH_STOP_TOKEN);
  ASSERT_FALSE(got.tokens.empty());
  EXPECT_EQ(got.tokens.back(), alone[3]);
  EXPECT_LE(got.tokens.size(), 4u);
}

// A backend whose prompt steps take `delay` more: long enough to watch the
// engine's busy time while a step runs.
class SlowPrefillBackend : public Backend {
 public:
  SlowPrefillBackend(std::unique_ptr<CpuBackend> inner, std::chrono::milliseconds delay)
      : inner_(std::move(inner)), delay_(delay) {}
  absl::Status Forward(std::span<const SequenceStep> batch, StepResult* result,
                       const LayerDone& after_layer) override {
    if (!batch.empty() && batch[0].tokens.size() > 1) std::this_thread::sleep_for(delay_);
    return inner_->Forward(batch, result, after_layer);
  }
  absl::Status ReadKv(int32_t layer, std::span<const int32_t> table, int32_t first, int32_t count,
                      std::span<uint8_t> dst) const override {
    return inner_->ReadKv(layer, table, first, count, dst);
  }
  absl::Status WriteKv(int32_t layer, std::span<const int32_t> table, int32_t first,
                       int32_t count, std::span<const uint8_t> src) override {
    return inner_->WriteKv(layer, table, first, count, src);
  }
  KvLayout kv_layout() const override { return inner_->kv_layout(); }
  const ModelConfig& config() const override { return inner_->config(); }
  int32_t num_kv_blocks() const override { return inner_->num_kv_blocks(); }
  std::string_view name() const override { return "slow"; }

 private:
  std::unique_ptr<CpuBackend> inner_;
  std::chrono::milliseconds delay_;
};

TEST(EngineTest, BusyTimeGrowsWhileAStepRunsAndStepsAreReported) {
  SlowPrefillBackend backend(TinyBackend(64), std::chrono::milliseconds(600));
  absl::Mutex mu;
  std::vector<StepRecord> records;
  EngineOptions o;
  o.on_step = [&](const StepRecord& r) {
    absl::MutexLock lock(&mu);
    records.push_back(r);
  };
  Collector c;
  Engine engine(&backend, o);
  ASSERT_TRUE(engine.Submit(Request("a", Prompt(3, 40), 4), c.For("a")).ok());
  // Inside the slow prompt step: its time already counts, as prefill.
  std::this_thread::sleep_for(std::chrono::milliseconds(350));
  const EngineStats during = engine.Stats();
  EXPECT_GT(during.prefill_busy_seconds, 0.2);
  EXPECT_EQ(during.steps, 0);
  c.WaitFor(1);
  const EngineStats after = engine.Stats();
  EXPECT_GE(after.prefill_busy_seconds, 0.6);
  EXPECT_GE(after.prefill_busy_seconds, during.prefill_busy_seconds);
  EXPECT_GT(after.decode_busy_seconds, 0.0);
  absl::MutexLock lock(&mu);
  ASSERT_EQ(records.size(), 4u);  // one prompt step, three decode steps
  EXPECT_STREQ(records[0].phase, "prefill");
  EXPECT_EQ(records[0].prefill_tokens, 40);
  EXPECT_GE(records[0].seconds, 0.6);
  for (size_t i = 1; i < records.size(); ++i) {
    EXPECT_STREQ(records[i].phase, "decode");
    EXPECT_EQ(records[i].sequences, 1);
    EXPECT_EQ(records[i].decode_tokens, 1);
  }
}

}  // namespace
}  // namespace tokenfab
