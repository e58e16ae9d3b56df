#include "server/http/openai_response.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/http/http_error.h"

namespace tokenfab {
namespace {

using Json = nlohmann::ordered_json;
using ::testing::ElementsAre;

ResponseContext Context(OpenAiEndpoint endpoint, bool include_usage = false, int logprobs = -1) {
  return {.endpoint = endpoint,
          .id = ResponseId(endpoint, "req-1"),
          .created = 1700000000,
          .model = "tiny",
          .logprobs = logprobs,
          .include_usage = include_usage};
}

v1::GenerateResponse Text(const std::string& text) {
  v1::GenerateResponse r;
  r.set_text(text);
  r.add_token_ids(7);
  return r;
}

v1::GenerateResponse Final(const std::string& text, v1::FinishReason reason) {
  v1::GenerateResponse r = Text(text);
  r.set_finish_reason(reason);
  r.mutable_usage()->set_prompt_tokens(10);
  r.mutable_usage()->set_cached_tokens(4);
  r.mutable_usage()->set_completion_tokens(3);
  return r;
}

// Splits "data: x\n\n" events; [DONE] is kept as the string "[DONE]".
std::vector<Json> Events(const std::string& sse) {
  std::vector<Json> out;
  size_t pos = 0;
  while (pos < sse.size()) {
    const size_t end = sse.find("\n\n", pos);
    EXPECT_NE(end, std::string::npos) << sse;
    if (end == std::string::npos) break;
    const std::string event = sse.substr(pos, end - pos);
    EXPECT_EQ(event.rfind("data: ", 0), 0u) << event;
    const std::string data = event.substr(6);
    out.push_back(data == "[DONE]" ? Json("[DONE]") : Json::parse(data));
    pos = end + 2;
  }
  return out;
}

TEST(OpenAiResponseTest, Ids) {
  EXPECT_EQ(ResponseId(OpenAiEndpoint::kCompletions, "x"), "cmpl-x");
  EXPECT_EQ(ResponseId(OpenAiEndpoint::kChatCompletions, "x"), "chatcmpl-x");
}

TEST(OpenAiResponseTest, UsageShape) {
  v1::Usage u;
  u.set_prompt_tokens(10);
  u.set_cached_tokens(4);
  u.set_completion_tokens(3);
  EXPECT_EQ(UsageJson(u).dump(),
            R"({"prompt_tokens":10,"completion_tokens":3,"total_tokens":13,)"
            R"("prompt_tokens_details":{"cached_tokens":4}})");
}

TEST(OpenAiResponseTest, FinishReasons) {
  EXPECT_EQ(FinishReasonJson(v1::FINISH_REASON_STOP), "stop");
  EXPECT_EQ(FinishReasonJson(v1::FINISH_REASON_LENGTH), "length");
  EXPECT_TRUE(FinishReasonJson(v1::FINISH_REASON_CANCELLED).is_null());
  EXPECT_TRUE(FinishReasonJson(v1::FINISH_REASON_UNSPECIFIED).is_null());
}

TEST(OpenAiResponseTest, CompletionStream) {
  OpenAiStreamEncoder e(Context(OpenAiEndpoint::kCompletions));
  EXPECT_EQ(e.Begin(), "");
  std::vector<Json> first = Events(e.Encode(Text("Hel")));
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(first[0].dump(),
            R"({"id":"cmpl-req-1","object":"text_completion","created":1700000000,"model":"tiny",)"
            R"("choices":[{"index":0,"text":"Hel","logprobs":null,"finish_reason":null}]})");
  EXPECT_EQ(e.Encode(Text("")), "");  // half a character: nothing to send
  std::vector<Json> last = Events(e.Encode(Final("lo", v1::FINISH_REASON_STOP)));
  ASSERT_EQ(last.size(), 2u);
  EXPECT_EQ(last[0]["choices"][0]["text"], "lo");
  EXPECT_EQ(last[0]["choices"][0]["finish_reason"], "stop");
  EXPECT_FALSE(last[0].contains("usage"));
  EXPECT_EQ(last[1], "[DONE]");
}

TEST(OpenAiResponseTest, ChatStreamWithUsage) {
  OpenAiStreamEncoder e(Context(OpenAiEndpoint::kChatCompletions, /*include_usage=*/true));
  std::vector<Json> begin = Events(e.Begin());
  ASSERT_EQ(begin.size(), 1u);
  EXPECT_EQ(begin[0]["object"], "chat.completion.chunk");
  EXPECT_EQ(begin[0]["id"], "chatcmpl-req-1");
  EXPECT_EQ(begin[0]["choices"][0]["delta"]["role"], "assistant");
  EXPECT_TRUE(begin[0]["usage"].is_null());
  std::vector<Json> mid = Events(e.Encode(Text("Hi")));
  ASSERT_EQ(mid.size(), 1u);
  EXPECT_EQ(mid[0]["choices"][0]["delta"].dump(), R"({"content":"Hi"})");
  std::vector<Json> last = Events(e.Encode(Final("", v1::FINISH_REASON_LENGTH)));
  ASSERT_EQ(last.size(), 3u);
  EXPECT_EQ(last[0]["choices"][0]["delta"].dump(), "{}");
  EXPECT_EQ(last[0]["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(last[1]["choices"].dump(), "[]");
  EXPECT_EQ(last[1]["usage"]["total_tokens"], 13);
  EXPECT_EQ(last[1]["usage"]["prompt_tokens_details"]["cached_tokens"], 4);
  EXPECT_EQ(last[2], "[DONE]");
}

TEST(OpenAiResponseTest, CancelledStreamJustEnds) {
  OpenAiStreamEncoder e(Context(OpenAiEndpoint::kChatCompletions));
  std::vector<Json> last = Events(e.Encode(Final("x", v1::FINISH_REASON_CANCELLED)));
  ASSERT_EQ(last.size(), 1u);
  EXPECT_TRUE(last[0]["choices"][0]["finish_reason"].is_null());
  EXPECT_EQ(e.Encode(Final("", v1::FINISH_REASON_CANCELLED)), "");
}

TEST(OpenAiResponseTest, ErrorStreamEndsWithAnErrorEvent) {
  OpenAiStreamEncoder e(Context(OpenAiEndpoint::kCompletions));
  std::vector<Json> last = Events(e.Encode(Final("", v1::FINISH_REASON_ERROR)));
  ASSERT_EQ(last.size(), 2u);
  EXPECT_EQ(last[0]["error"]["type"], "server_error");
  EXPECT_EQ(last[1], "[DONE]");
}

v1::TokenLogprobs Logprob(const std::string& text, float lp,
                          std::vector<std::pair<std::string, float>> top) {
  v1::TokenLogprobs l;
  l.mutable_chosen()->set_text(text);
  l.mutable_chosen()->set_logprob(lp);
  for (auto& [t, p] : top) {
    v1::TokenLogprob* a = l.add_top();
    a->set_text(t);
    a->set_logprob(p);
  }
  return l;
}

TEST(OpenAiResponseTest, CompletionLogprobs) {
  LogprobList list;
  *list.Add() = Logprob("He", -0.5f, {{"He", -0.5f}, {"A", -1.5f}});
  *list.Add() = Logprob("llo", -0.25f, {{"llo", -0.25f}, {"y", -2.0f}});
  int64_t offset = 3;
  Json j = CompletionLogprobsJson(list, 1, &offset);
  EXPECT_EQ(j.dump(), R"({"tokens":["He","llo"],"token_logprobs":[-0.5,-0.25],)"
                      R"("top_logprobs":[{"He":-0.5},{"llo":-0.25}],"text_offset":[3,5]})");
  EXPECT_EQ(offset, 8);
}

TEST(OpenAiResponseTest, ChatLogprobsCarryBytes) {
  LogprobList list;
  *list.Add() = Logprob("\xc3", -0.5f, {{"\xc3", -0.5f}, {"b", -1.0f}});  // half of "é"
  Json j = ChatLogprobsJson(list, 2);
  ASSERT_EQ(j["content"].size(), 1u);
  EXPECT_EQ(j["content"][0]["bytes"].dump(), "[195]");
  EXPECT_EQ(j["content"][0]["top_logprobs"].size(), 2u);
  EXPECT_EQ(j["content"][0]["top_logprobs"][1]["token"], "b");
  // Not UTF-8: serialized with a replacement character instead of throwing.
  EXPECT_EQ(DumpJson(Json{{"t", "\xc3"}}), "{\"t\":\"\xef\xbf\xbd\"}");
}

TEST(OpenAiResponseTest, NonStreamedChat) {
  OpenAiResponseBuilder b(Context(OpenAiEndpoint::kChatCompletions));
  b.Add(Text("Hel"));
  b.Add(Final("lo", v1::FINISH_REASON_STOP));
  EXPECT_EQ(b.Build().dump(),
            R"({"id":"chatcmpl-req-1","object":"chat.completion","created":1700000000,)"
            R"("model":"tiny","choices":[{"index":0,"message":{"role":"assistant","content":"Hello"},)"
            R"("logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":10,)"
            R"("completion_tokens":3,"total_tokens":13,"prompt_tokens_details":{"cached_tokens":4}}})");
}

TEST(OpenAiResponseTest, NonStreamedCompletionWithLogprobs) {
  OpenAiResponseBuilder b(Context(OpenAiEndpoint::kCompletions, false, /*logprobs=*/0));
  v1::GenerateResponse r = Final("ab", v1::FINISH_REASON_LENGTH);
  *r.add_logprobs() = Logprob("ab", -1.0f, {{"ab", -1.0f}});
  b.Add(r);
  Json j = b.Build();
  EXPECT_EQ(j["object"], "text_completion");
  EXPECT_EQ(j["choices"][0]["text"], "ab");
  EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(j["choices"][0]["logprobs"]["tokens"].dump(), R"(["ab"])");
  EXPECT_EQ(j["choices"][0]["logprobs"]["top_logprobs"].dump(), "[{}]");  // logprobs: 0
}

TEST(HttpErrorTest, MapsStatusToHttp) {
  HttpError e = HttpErrorFromStatus(absl::InvalidArgumentError("temperature must be >= 0, got -1"));
  EXPECT_EQ(e.status, 400);
  EXPECT_EQ(e.body.dump(), R"({"error":{"message":"temperature must be >= 0, got -1",)"
                           R"("type":"invalid_request_error","param":"temperature","code":null}})");
  EXPECT_EQ(HttpErrorFromStatus(absl::InvalidArgumentError("model 'x' is not served here"))
                .body["error"]["code"],
            "model_not_found");
  EXPECT_EQ(HttpErrorFromStatus(absl::FailedPreconditionError("this model has no chat template"))
                .status,
            400);
  EXPECT_EQ(HttpErrorFromStatus(absl::NotFoundError("x")).status, 404);
  HttpError busy = HttpErrorFromStatus(absl::ResourceExhaustedError("queue full"));
  EXPECT_EQ(busy.status, 429);
  EXPECT_EQ(busy.body["error"]["code"], "rate_limit_exceeded");
  EXPECT_EQ(HttpErrorFromStatus(absl::UnavailableError("shutting down")).status, 503);
  EXPECT_EQ(HttpErrorFromStatus(absl::CancelledError("x")).status, 503);
  EXPECT_EQ(HttpErrorFromStatus(absl::InternalError("boom")).status, 500);
  EXPECT_EQ(HttpErrorFromStatus(absl::InternalError("boom")).body["error"]["type"], "server_error");
}

TEST(HttpErrorTest, ParamFromMessage) {
  EXPECT_EQ(ParamFromMessage("prompt has 300 tokens"), "prompt");
  EXPECT_EQ(ParamFromMessage("messages[0].content is not valid UTF-8"), "messages[0].content");
  EXPECT_EQ(ParamFromMessage("stream_options.include_usage must be a boolean"),
            "stream_options.include_usage");
  EXPECT_EQ(ParamFromMessage("a chat message is not valid UTF-8"), "");
  EXPECT_EQ(ParamFromMessage("the request body is not valid JSON"), "");
  EXPECT_EQ(ParamFromMessage("prompt"), "prompt");
  EXPECT_EQ(ParamFromMessage("prompts are bad"), "");
}

}  // namespace
}  // namespace tokenfab
