#include "scheduler/admission.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tokenfab {
namespace {

using ::testing::HasSubstr;

constexpr ModelLimits kLimits{/*context_length=*/100, /*vocab_size=*/50};

TEST(AdmissionTest, UnsetMaxTokensMeansTheRestOfTheContext) {
  v1::GenerateRequest r;
  r.set_prompt("x");
  EXPECT_EQ(*AdmitRequest(r, 30, kLimits), 70);
  r.set_max_tokens(10);
  EXPECT_EQ(*AdmitRequest(r, 30, kLimits), 10);
}

TEST(AdmissionTest, RejectsWithTheFieldNamed) {
  struct Case {
    void (*mutate)(v1::GenerateRequest*);
    int32_t prompt_tokens;
    const char* expected;
  };
  const Case cases[] = {
      {[](v1::GenerateRequest* r) { r->mutable_sampling()->set_temperature(-1); }, 5, "temperature"},
      {[](v1::GenerateRequest* r) { r->mutable_sampling()->set_top_p(1.5f); }, 5, "top_p"},
      {[](v1::GenerateRequest* r) { r->mutable_sampling()->set_top_k(-2); }, 5, "top_k"},
      {[](v1::GenerateRequest* r) { r->mutable_sampling()->set_min_p(-0.1f); }, 5, "min_p"},
      {[](v1::GenerateRequest* r) { r->mutable_sampling()->set_presence_penalty(3); }, 5,
       "presence_penalty"},
      {[](v1::GenerateRequest* r) { r->set_max_tokens(-1); }, 5, "max_tokens must be positive"},
      {[](v1::GenerateRequest* r) { r->set_max_tokens(0); }, 5, "max_tokens must be positive"},
      {[](v1::GenerateRequest* r) { r->set_max_tokens(96); }, 5, "at most 95 can be generated"},
      {[](v1::GenerateRequest* r) { r->set_logprobs(21); }, 5, "logprobs"},
      {[](v1::GenerateRequest* r) { r->add_stop_token_ids(50); }, 5, "stop_token_ids contains 50"},
      {[](v1::GenerateRequest* r) { r->mutable_prompt_ids()->add_ids(-3); }, 5, "prompt_ids"},
      {[](v1::GenerateRequest*) {}, 100, "context length is 100"},
      {[](v1::GenerateRequest*) {}, 0, "prompt is empty"},
  };
  for (const Case& c : cases) {
    v1::GenerateRequest r;
    c.mutate(&r);
    auto got = AdmitRequest(r, c.prompt_tokens, kLimits);
    ASSERT_FALSE(got.ok()) << c.expected;
    EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(got.status().message(), HasSubstr(c.expected));
  }
}

}  // namespace
}  // namespace tokenfab
