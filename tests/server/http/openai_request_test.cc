#include "server/http/openai_request.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tokenfab {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

absl::StatusOr<OpenAiRequest> Completion(const std::string& body) {
  return ParseOpenAiRequest(OpenAiEndpoint::kCompletions, body);
}
std::string Message(const absl::StatusOr<OpenAiRequest>& r) { return std::string(r.status().message()); }

absl::StatusOr<OpenAiRequest> Chat(const std::string& body) {
  return ParseOpenAiRequest(OpenAiEndpoint::kChatCompletions, body);
}

TEST(OpenAiRequestTest, AppliesOpenAiDefaultsWhereTheProtoDiffers) {
  auto r = Completion(R"({"model": "m", "prompt": "hello"})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->request.model(), "m");
  EXPECT_EQ(r->request.prompt(), "hello");
  EXPECT_FLOAT_EQ(r->request.sampling().temperature(), 1.0f);
  EXPECT_FLOAT_EQ(r->request.sampling().top_p(), 1.0f);
  EXPECT_FALSE(r->request.has_max_tokens());  // the rest of the context
  EXPECT_FALSE(r->request.sampling().has_seed());
  EXPECT_FALSE(r->request.has_stop_at_eos());
  EXPECT_EQ(r->request.logprobs(), 0);
  EXPECT_EQ(r->logprobs, -1);
  EXPECT_FALSE(r->stream);
}

TEST(OpenAiRequestTest, MapsEveryField) {
  auto r = Completion(R"({
    "prompt": "p", "max_tokens": 7, "temperature": 0.5, "top_p": 0.9, "seed": -1,
    "stop": ["a", "bc"], "presence_penalty": 0.5, "frequency_penalty": -0.5, "logprobs": 3,
    "n": 1, "user": "someone", "top_k": 40, "min_p": 0.05, "repetition_penalty": 1.1,
    "ignore_eos": true, "priority": 5, "stop_token_ids": [2, 3], "stream": true,
    "stream_options": {"include_usage": true}, "unknown_key": {"nested": [1]}})");
  ASSERT_TRUE(r.ok()) << r.status();
  const v1::GenerateRequest& g = r->request;
  EXPECT_EQ(g.max_tokens(), 7);
  EXPECT_FLOAT_EQ(g.sampling().temperature(), 0.5f);
  EXPECT_FLOAT_EQ(g.sampling().top_p(), 0.9f);
  EXPECT_EQ(g.sampling().seed(), ~uint64_t{0});
  EXPECT_THAT(g.stop(), ::testing::ElementsAre("a", "bc"));
  EXPECT_FLOAT_EQ(g.sampling().presence_penalty(), 0.5f);
  EXPECT_FLOAT_EQ(g.sampling().frequency_penalty(), -0.5f);
  EXPECT_EQ(g.logprobs(), 3);
  EXPECT_EQ(r->logprobs, 3);
  EXPECT_EQ(g.sampling().top_k(), 40);
  EXPECT_FLOAT_EQ(g.sampling().min_p(), 0.05f);
  EXPECT_FLOAT_EQ(g.sampling().repetition_penalty(), 1.1f);
  ASSERT_TRUE(g.has_stop_at_eos());
  EXPECT_FALSE(g.stop_at_eos());
  EXPECT_EQ(g.priority(), -5);  // vLLM: lower first; proto: larger first
  EXPECT_THAT(g.stop_token_ids(), ::testing::ElementsAre(2, 3));
  EXPECT_TRUE(r->stream);
  EXPECT_TRUE(r->include_usage);
}

TEST(OpenAiRequestTest, PromptForms) {
  auto ids = Completion(R"({"prompt": [1, 2, 3]})");
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_THAT(ids->request.prompt_ids().ids(), ::testing::ElementsAre(1, 2, 3));
  auto one = Completion(R"({"prompt": ["only"]})");
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(one->request.prompt(), "only");
  auto nested = Completion(R"({"prompt": [[4, 5]]})");
  ASSERT_TRUE(nested.ok());
  EXPECT_THAT(nested->request.prompt_ids().ids(), ::testing::ElementsAre(4, 5));
  EXPECT_THAT(Message(Completion(R"({"prompt": ["a", "b"]})")),
              HasSubstr("send one prompt per request"));
  EXPECT_THAT(Message(Completion(R"({"prompt": [1, -2]})")), StartsWith("prompt[1]"));
}

TEST(OpenAiRequestTest, ChatMessagesWithContentParts) {
  auto r = Chat(R"({"messages": [
      {"role": "developer", "content": "be brief"},
      {"role": "user", "content": [{"type": "text", "text": "one "}, {"type": "text", "text": "two"}]},
      {"role": "assistant", "content": null}],
    "logprobs": true, "top_logprobs": 2, "max_completion_tokens": 9, "max_tokens": 100})");
  ASSERT_TRUE(r.ok()) << r.status();
  const auto& m = r->request.chat().messages();
  ASSERT_EQ(m.size(), 3);
  EXPECT_EQ(m[0].role(), "developer");  // the router maps it to system
  EXPECT_EQ(m[1].content(), "one two");
  EXPECT_EQ(m[2].role(), "assistant");
  EXPECT_EQ(m[2].content(), "");
  EXPECT_EQ(r->logprobs, 2);
  EXPECT_EQ(r->request.logprobs(), 2);
  EXPECT_EQ(r->request.max_tokens(), 9);  // max_completion_tokens wins
}

TEST(OpenAiRequestTest, ChatLogprobsWithoutTopStillReportsTheChosenToken) {
  auto r = Chat(R"({"messages": [{"role": "user", "content": "x"}], "logprobs": true})");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->logprobs, 0);
  EXPECT_EQ(r->request.logprobs(), 1);
}

TEST(OpenAiRequestTest, TopPZeroIsGreedy) {
  auto r = Completion(R"({"prompt": "x", "top_p": 0, "temperature": 0.8})");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->request.sampling().temperature(), 0.0f);
  EXPECT_EQ(r->request.sampling().top_p(), 1.0f);
}

TEST(OpenAiRequestTest, NullMeansNotGiven) {
  auto r = Completion(R"({"prompt": "x", "max_tokens": null, "temperature": null, "stop": null,
                          "n": null, "logprobs": null, "seed": null})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->request.has_max_tokens());
  EXPECT_FLOAT_EQ(r->request.sampling().temperature(), 1.0f);
}

TEST(OpenAiRequestTest, ErrorsNameTheField) {
  struct Case {
    OpenAiEndpoint endpoint;
    std::string body;
    std::string expected_start;
  };
  const OpenAiEndpoint kC = OpenAiEndpoint::kCompletions, kChat = OpenAiEndpoint::kChatCompletions;
  const Case cases[] = {
      {kC, R"({})", "prompt is required"},
      {kC, R"({"prompt": ""})", "prompt is empty"},
      {kC, R"({"prompt": []})", "prompt is empty"},
      {kC, R"({"prompt": 5})", "prompt must be"},
      {kC, R"({"prompt": "x", "model": 3})", "model must be a string"},
      {kC, R"({"prompt": "x", "temperature": -1})", "temperature must be between 0 and 2"},
      {kC, R"({"prompt": "x", "temperature": "hot"})", "temperature must be a number"},
      {kC, R"({"prompt": "x", "top_p": 2})", "top_p must be between 0 and 1"},
      {kC, R"({"prompt": "x", "n": 2})", "n must be 1"},
      {kC, R"({"prompt": "x", "best_of": 3})", "best_of must be 1"},
      {kC, R"({"prompt": "x", "max_tokens": 0})", "max_tokens must be at least 1"},
      {kC, R"({"prompt": "x", "max_tokens": 2.5})", "max_tokens must be an integer"},
      {kC, R"({"prompt": "x", "max_tokens": 99999999999})", "max_tokens must be at most"},
      {kC, R"({"prompt": "x", "stop": 3})", "stop must be a string or a list of strings"},
      {kC, R"({"prompt": "x", "stop": [""]})", "stop contains an empty string"},
      {kC, R"({"prompt": "x", "logprobs": 21})", "logprobs must be at most 20"},
      {kC, R"({"prompt": "x", "presence_penalty": 3})", "presence_penalty must be between"},
      {kC, R"({"prompt": "x", "repetition_penalty": 0})", "repetition_penalty must be greater"},
      {kC, R"({"prompt": "x", "top_k": -2})", "top_k must be at least -1"},
      {kC, R"({"prompt": "x", "ignore_eos": "yes"})", "ignore_eos must be a boolean"},
      {kC, R"({"prompt": "x", "echo": true})", "echo is not supported"},
      {kC, R"({"prompt": "x", "logit_bias": {"1": 5}})", "logit_bias is not supported"},
      {kC, R"({"prompt": "x", "stream_options": {"include_usage": true}})",
       "stream_options is only allowed when stream is true"},
      {kC, R"({"prompt": "x", "stream": true, "stream_options": {"include_usage": 1}})",
       "stream_options.include_usage must be a boolean"},
      {kChat, R"({"messages": []})", "messages must not be empty"},
      {kChat, R"({"prompt": "x"})", "messages is required"},
      {kChat, R"({"messages": [{"content": "x"}]})", "messages[0].role must be a string"},
      {kChat, R"({"messages": [{"role": "user", "content": 5}]})", "messages[0].content must be"},
      {kChat, R"({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]})",
       "messages[0].content[0].type 'image_url' is not supported"},
      {kChat, R"({"messages": [{"role": "user", "content": "x"}], "top_logprobs": 2})",
       "top_logprobs requires logprobs to be true"},
      {kChat, R"({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]})",
       "tools are not supported"},
      {kC, "{\"prompt\": \"ab\xff\"}", "prompt is not valid UTF-8"},
      {kChat, "{\"messages\": [{\"role\": \"user\", \"content\": \"\xc3\"}]}",
       "messages[0].content is not valid UTF-8"},
      {kC, R"({"prompt": "x",)", "the request body is not valid JSON"},
      {kC, R"([1, 2])", "the request body must be a JSON object"},
      {kC, R"({"prompt": "\ud800"})", "the request body is not valid JSON"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<OpenAiRequest> r = ParseOpenAiRequest(c.endpoint, c.body);
    ASSERT_FALSE(r.ok()) << c.body;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << c.body;
    EXPECT_THAT(Message(r), StartsWith(c.expected_start)) << c.body;
  }
}

}  // namespace
}  // namespace tokenfab
