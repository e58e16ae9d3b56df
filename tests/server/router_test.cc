// The router's request path with a scripted worker: prompt building and
// admission, incremental text, stop strings, logprob text, usage, and the
// errors that reach clients before anything streams.
#include "server/router.h"

#include <deque>
#include <filesystem>

#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prometheus/registry.h"
#include "prometheus/text_serializer.h"
#include "tests/test_paths.h"

namespace tokenfab {
namespace {

using ::testing::HasSubstr;

// Answers every request with a fixed token script, synchronously.
class ScriptedWorker : public WorkerClient {
 public:
  absl::Status Submit(internal::v1::WorkerRequest request, OutputCallback on_output) override {
    if (full) return absl::ResourceExhaustedError("the queue is full");
    last_request = request;
    for (size_t i = 0; i < script.size(); ++i) {
      internal::v1::WorkerOutput out;
      out.set_request_id(request.request_id());
      out.add_token_ids(script[i]);
      out.set_prompt_tokens(request.prompt_ids_size());
      out.set_cached_tokens(16);
      if (request.logprobs() > 0) {
        auto* lp = out.add_logprobs();
        lp->mutable_chosen()->set_token_id(script[i]);
        lp->mutable_chosen()->set_logprob(-0.5f);
        lp->add_top()->set_token_id(script[i]);
      }
      if (i + 1 == script.size()) {
        out.set_finish(finish);
        out.set_completion_tokens(static_cast<int32_t>(script.size()));
      }
      on_output(out);
      if (cancelled) break;
    }
    return absl::OkStatus();
  }
  void Cancel(const std::string&) override { cancelled = true; }
  WorkerLoad Load() const override { return {}; }

  std::vector<int32_t> script;
  internal::v1::WorkerFinish finish = internal::v1::WORKER_FINISH_LENGTH;
  internal::v1::WorkerRequest last_request;
  bool full = false;
  bool cancelled = false;
};

class CollectingSink : public ResponseSink {
 public:
  void OnResponse(const v1::GenerateResponse& r) override { responses.push_back(r); }
  std::string Text() const {
    std::string t;
    for (const auto& r : responses) t += r.text();
    return t;
  }
  std::vector<v1::GenerateResponse> responses;
};

class RouterTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!std::filesystem::exists(testing::DefaultModelPath())) return;
    model_ = LoadModel(testing::DefaultModelPath(), {.load_weights = false})->release();
  }
  void SetUp() override {
    if (!testing::RequireFile(testing::DefaultModelPath())) GTEST_SKIP();
    router_ = std::make_unique<Router>(*model_, &worker_, RouterOptions{.model_id = "smol"});
  }
  // Token ids of `text` under the model's tokenizer.
  std::vector<int32_t> Ids(const std::string& text) { return model_->tokenizer->Encode(text); }

  static LoadedModel* model_;
  ScriptedWorker worker_;
  std::unique_ptr<Router> router_;
};
LoadedModel* RouterTest::model_ = nullptr;

TEST_F(RouterTest, StreamsTextAndEndsWithUsage) {
  worker_.script = Ids(" Paris is the capital.");
  v1::GenerateRequest r;
  r.set_prompt("The capital of France is");
  r.set_max_tokens(20);
  auto sink = std::make_shared<CollectingSink>();
  ASSERT_TRUE(router_->Generate(r, sink).ok());
  EXPECT_EQ(sink->Text(), " Paris is the capital.");
  const v1::GenerateResponse& last = sink->responses.back();
  EXPECT_EQ(last.finish_reason(), v1::FINISH_REASON_LENGTH);
  EXPECT_EQ(last.usage().prompt_tokens(), 5);
  EXPECT_EQ(last.usage().cached_tokens(), 16);
  EXPECT_EQ(last.usage().completion_tokens(), static_cast<int32_t>(worker_.script.size()));
  // The worker got the tokenized prompt, the end-of-generation ids, a seed.
  EXPECT_THAT(worker_.last_request.prompt_ids(), ::testing::ElementsAre(504, 3575, 282, 4649, 314));
  EXPECT_THAT(worker_.last_request.stop_token_ids(), ::testing::Contains(2));
  EXPECT_TRUE(worker_.last_request.sampling().has_seed());
  EXPECT_EQ(worker_.last_request.max_tokens(), 20);
}

TEST_F(RouterTest, StopStringEndsTheTextAndCancelsTheWorker) {
  worker_.script = Ids(" one two three four");
  v1::GenerateRequest r;
  r.set_prompt("Count:");
  r.add_stop(" three");
  auto sink = std::make_shared<CollectingSink>();
  ASSERT_TRUE(router_->Generate(r, sink).ok());
  EXPECT_EQ(sink->Text(), " one two");
  EXPECT_EQ(sink->responses.back().finish_reason(), v1::FINISH_REASON_STOP);
  EXPECT_TRUE(worker_.cancelled);
}

TEST_F(RouterTest, EndOfGenerationTokenIsNotText) {
  worker_.script = Ids(" Hi");
  worker_.script.push_back(2);  // <|im_end|>
  worker_.finish = internal::v1::WORKER_FINISH_STOP_TOKEN;
  v1::GenerateRequest r;
  r.set_prompt("x");
  auto sink = std::make_shared<CollectingSink>();
  ASSERT_TRUE(router_->Generate(r, sink).ok());
  EXPECT_EQ(sink->Text(), " Hi");
  EXPECT_EQ(sink->responses.back().finish_reason(), v1::FINISH_REASON_STOP);
}

TEST_F(RouterTest, ChatRolesAreCheckedAndDeveloperIsSystem) {
  auto chat = [](const std::string& role) {
    v1::GenerateRequest r;
    v1::ChatMessage* m = r.mutable_chat()->add_messages();
    m->set_role(role);
    m->set_content("Be brief.");
    m = r.mutable_chat()->add_messages();
    m->set_role("user");
    m->set_content("Hi");
    r.set_max_tokens(1);
    return r;
  };
  worker_.script = Ids(" Hello");
  ASSERT_TRUE(router_->Generate(chat("system"), std::make_shared<CollectingSink>()).ok());
  const auto as_system = worker_.last_request.prompt_ids();
  ASSERT_TRUE(router_->Generate(chat("developer"), std::make_shared<CollectingSink>()).ok());
  EXPECT_THAT(worker_.last_request.prompt_ids(), ::testing::ElementsAreArray(as_system));

  auto wizard = router_->Generate(chat("wizard"), std::make_shared<CollectingSink>());
  EXPECT_EQ(wizard.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(wizard.status().message()), ::testing::StartsWith("messages[0].role must be one of"));
}

TEST_F(RouterTest, LogprobsCarryTokenText) {
  worker_.script = Ids(" Paris");
  v1::GenerateRequest r;
  r.set_prompt("x");
  r.set_logprobs(1);
  auto sink = std::make_shared<CollectingSink>();
  ASSERT_TRUE(router_->Generate(r, sink).ok());
  ASSERT_EQ(sink->responses[0].logprobs_size(), 1);
  EXPECT_EQ(sink->responses[0].logprobs(0).chosen().text(), " Paris");
  EXPECT_FLOAT_EQ(sink->responses[0].logprobs(0).chosen().logprob(), -0.5f);
}

TEST_F(RouterTest, ErrorsNameTheFieldAndStreamNothing) {
  struct Case {
    void (*mutate)(v1::GenerateRequest*);
    absl::StatusCode code;
    const char* text;
  };
  const Case cases[] = {
      {[](v1::GenerateRequest* r) { r->set_prompt(""); }, absl::StatusCode::kInvalidArgument, "prompt"},
      {[](v1::GenerateRequest* r) { r->set_prompt("\xff\xfe"); }, absl::StatusCode::kInvalidArgument,
       "prompt is not valid UTF-8"},
      {[](v1::GenerateRequest* r) { r->set_model("gpt-4"); }, absl::StatusCode::kInvalidArgument,
       "model 'gpt-4'"},
      {[](v1::GenerateRequest* r) { r->add_stop(""); }, absl::StatusCode::kInvalidArgument, "stop"},
      {[](v1::GenerateRequest* r) { r->mutable_chat()->add_messages()->set_content("hi"); },
       absl::StatusCode::kOk, ""},
  };
  for (const Case& c : cases) {
    v1::GenerateRequest r;
    r.set_prompt("hello");
    c.mutate(&r);
    auto sink = std::make_shared<CollectingSink>();
    worker_.script = {};
    auto got = router_->Generate(r, sink);
    if (c.code == absl::StatusCode::kOk) continue;
    ASSERT_FALSE(got.ok()) << c.text;
    EXPECT_EQ(got.status().code(), c.code);
    EXPECT_THAT(got.status().message(), HasSubstr(c.text));
    EXPECT_TRUE(sink->responses.empty());
  }
  worker_.full = true;
  v1::GenerateRequest r;
  r.set_prompt("hello");
  EXPECT_EQ(router_->Generate(r, std::make_shared<CollectingSink>()).status().code(),
            absl::StatusCode::kResourceExhausted);
}

// The value of the sample `name{labels}` in the registry's text exposition.
double Sample(prometheus::Registry& registry, const std::string& sample) {
  const std::string text = prometheus::TextSerializer().Serialize(registry.Collect());
  const size_t at = text.find("\n" + sample + " ");
  if (at == std::string::npos) return -1;
  return std::stod(text.substr(at + sample.size() + 2));
}

TEST_F(RouterTest, MetricsCountOutcomesTokensAndLatencies) {
  prometheus::Registry registry;
  RequestMetrics metrics(registry);
  Router router(*model_, &worker_, RouterOptions{.model_id = "smol", .metrics = &metrics});
  worker_.script = Ids(" one two three");
  v1::GenerateRequest r;
  r.set_prompt("Count:");
  r.set_max_tokens(20);
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(router.Generate(r, std::make_shared<CollectingSink>()).ok());
  const double n = static_cast<double>(worker_.script.size());
  EXPECT_EQ(Sample(registry, "tokenfab_router_requests_total{outcome=\"length\"}"), 2);
  EXPECT_EQ(Sample(registry, "tokenfab_router_generation_tokens_total"), 2 * n);
  EXPECT_EQ(Sample(registry, "tokenfab_router_prompt_tokens_total"),
            2.0 * static_cast<double>(Ids("Count:").size()));
  EXPECT_EQ(Sample(registry, "tokenfab_router_cached_tokens_total"), 32);
  EXPECT_EQ(Sample(registry, "tokenfab_router_time_to_first_token_seconds_count"), 2);
  EXPECT_EQ(Sample(registry, "tokenfab_router_inter_token_latency_seconds_count"), 2 * (n - 1));
  EXPECT_EQ(Sample(registry, "tokenfab_router_e2e_request_latency_seconds_count"), 2);
  EXPECT_EQ(Sample(registry, "tokenfab_router_requests_in_flight"), 0);
  EXPECT_EQ(Sample(registry, "tokenfab_router_requests_queued"), 0);

  worker_.full = true;
  EXPECT_FALSE(router.Generate(r, std::make_shared<CollectingSink>()).ok());
  r.set_max_tokens(-1);
  EXPECT_FALSE(router.Generate(r, std::make_shared<CollectingSink>()).ok());
  EXPECT_EQ(Sample(registry, "tokenfab_router_requests_total{outcome=\"rejected\"}"), 1);
  EXPECT_EQ(Sample(registry, "tokenfab_router_rejections_total{reason=\"queue_full\"}"), 1);
  EXPECT_EQ(Sample(registry, "tokenfab_router_requests_total{outcome=\"invalid\"}"), 1);
  EXPECT_EQ(Sample(registry, "tokenfab_router_requests_in_flight"), 0);
  EXPECT_EQ(Sample(registry, "tokenfab_router_requests_queued"), 0);
}

}  // namespace
}  // namespace tokenfab
