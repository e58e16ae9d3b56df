#include "server/loadgen/openai_stream.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace tokenfab::loadgen {
namespace {

using ::testing::ElementsAre;

TEST(SseParserTest, SplitsEventsOnBlankLines) {
  SseParser p;
  EXPECT_THAT(p.Feed("data: {\"a\":1}\n\ndata: [DONE]\n\n"), ElementsAre("{\"a\":1}", "[DONE]"));
}

TEST(SseParserTest, BytesCutAnywhereIncludingCrLf) {
  const std::string stream = "data: one\r\n\r\n: keep-alive comment\r\n\r\ndata:two\r\n\r\n";
  SseParser p;
  std::vector<std::string> events;
  for (char c : stream) {
    for (std::string& e : p.Feed(std::string_view(&c, 1))) events.push_back(std::move(e));
  }
  EXPECT_THAT(events, ElementsAre("one", "two"));
}

TEST(SseParserTest, JoinsMultipleDataLinesAndSkipsOtherFields) {
  SseParser p;
  EXPECT_THAT(p.Feed("event: x\nid: 3\ndata: a\ndata: b\n\nevent: only\n\n"), ElementsAre("a\nb"));
  EXPECT_TRUE(p.Feed("data: partial").empty());
  EXPECT_THAT(p.Feed("\n\n"), ElementsAre("partial"));
}

TEST(ParseCompletionChunkTest, TextChunk) {
  auto c = ParseCompletionChunk(
      R"({"id":"c1","object":"text_completion","choices":[{"index":0,"text":" hi","finish_reason":null}]})");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_FALSE(c->done);
  EXPECT_EQ(c->text, " hi");
  EXPECT_EQ(c->completion_tokens, -1);
  EXPECT_TRUE(c->finish_reason.empty());
}

TEST(ParseCompletionChunkTest, UsageOnlyChunk) {
  auto c = ParseCompletionChunk(
      R"({"choices":[],"usage":{"prompt_tokens":128,"completion_tokens":64,"total_tokens":192}})");
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(c->text.empty());
  EXPECT_EQ(c->prompt_tokens, 128);
  EXPECT_EQ(c->completion_tokens, 64);
}

TEST(ParseCompletionChunkTest, FinishReasonAndNullUsage) {
  auto c =
      ParseCompletionChunk(R"({"choices":[{"text":"","finish_reason":"length"}],"usage":null})");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->finish_reason, "length");
  EXPECT_EQ(c->completion_tokens, -1);
}

TEST(ParseCompletionChunkTest, ChatDelta) {
  auto c = ParseCompletionChunk(R"({"choices":[{"delta":{"content":"x"}}]})");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->text, "x");
}

TEST(ParseCompletionChunkTest, DoneErrorAndGarbage) {
  auto done = ParseCompletionChunk("[DONE]");
  ASSERT_TRUE(done.ok());
  EXPECT_TRUE(done->done);
  auto err = ParseCompletionChunk(R"({"error":{"message":"queue full","type":"overloaded"}})");
  ASSERT_FALSE(err.ok());
  EXPECT_NE(err.status().message().find("queue full"), std::string::npos);
  EXPECT_FALSE(ParseCompletionChunk("{not json").ok());
  EXPECT_FALSE(ParseCompletionChunk("[1,2]").ok());
}

TEST(CompletionRequestBodyTest, AsksForExactLengthStreamAndUsage) {
  auto body = CompletionRequestBody("m", "hello", 32, "");
  ASSERT_TRUE(body.ok());
  const nlohmann::json j = nlohmann::json::parse(*body);
  EXPECT_EQ(j["model"], "m");
  EXPECT_EQ(j["prompt"], "hello");
  EXPECT_EQ(j["max_tokens"], 32);
  EXPECT_EQ(j["ignore_eos"], true);
  EXPECT_EQ(j["stream"], true);
  EXPECT_EQ(j["stream_options"]["include_usage"], true);
}

TEST(CompletionRequestBodyTest, ExtraFieldsMergeAndOverride) {
  auto body = CompletionRequestBody("m", "p", 8, R"({"logit_bias":{"2":-100},"ignore_eos":false})");
  ASSERT_TRUE(body.ok());
  const nlohmann::json j = nlohmann::json::parse(*body);
  EXPECT_EQ(j["logit_bias"]["2"], -100);
  EXPECT_EQ(j["ignore_eos"], false);
  EXPECT_FALSE(CompletionRequestBody("m", "p", 8, "[1]").ok());
  EXPECT_FALSE(CompletionRequestBody("m", "p", 8, "{oops").ok());
}

TEST(FirstModelIdTest, ReadsOpenAiModelList) {
  auto id = FirstModelId(R"({"object":"list","data":[{"id":"smollm2","object":"model"}]})");
  ASSERT_TRUE(id.ok());
  EXPECT_EQ(*id, "smollm2");
  EXPECT_FALSE(FirstModelId(R"({"data":[]})").ok());
}

}  // namespace
}  // namespace tokenfab::loadgen
