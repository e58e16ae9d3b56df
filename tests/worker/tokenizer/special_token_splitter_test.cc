#include "worker/tokenizer/special_token_splitter.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tokenfab {
namespace {

using ::testing::ElementsAre;

// "id:text" per fragment, text fragments as "-1:text".
std::vector<std::string> Show(const std::vector<TextFragment>& fragments) {
  std::vector<std::string> out;
  for (const TextFragment& f : fragments) {
    out.push_back(std::to_string(f.token) + ":" + std::string(f.text));
  }
  return out;
}

TEST(SpecialTokenSplitterTest, SplitsAndKeepsOffsets) {
  SpecialTokenSplitter s({{1, "<|a|>"}, {2, "<|bb|>"}},
                         SpecialTokenSplitter::Order::kLongestTokenFirst);
  const auto f = s.Split("x<|a|>y<|bb|><|a|>", true);
  EXPECT_THAT(Show(f), ElementsAre("-1:x", "1:<|a|>", "-1:y", "2:<|bb|>", "1:<|a|>"));
  EXPECT_EQ(f[2].offset, 6u);
}

TEST(SpecialTokenSplitterTest, ParseSpecialOffKeepsUserDefinedTokens) {
  SpecialTokenRule control{1, "<c>"};
  SpecialTokenRule user{2, "<u>"};
  user.special = false;
  for (auto order : {SpecialTokenSplitter::Order::kLongestTokenFirst,
                     SpecialTokenSplitter::Order::kLeftmostLongest}) {
    SpecialTokenSplitter s({control, user}, order);
    EXPECT_THAT(Show(s.Split("a<c>b<u>", false)), ElementsAre("-1:a<c>b", "2:<u>"));
  }
}

// Overlapping tokens tell the two orders apart: llama.cpp claims the longest
// token anywhere first, Hugging Face the leftmost match.
TEST(SpecialTokenSplitterTest, OrdersDifferOnOverlaps) {
  std::vector<SpecialTokenRule> rules = {{1, "ab"}, {2, "bcd"}};
  SpecialTokenSplitter llama(rules, SpecialTokenSplitter::Order::kLongestTokenFirst);
  SpecialTokenSplitter hf(rules, SpecialTokenSplitter::Order::kLeftmostLongest);
  EXPECT_THAT(Show(llama.Split("abcd", true)), ElementsAre("-1:a", "2:bcd"));
  EXPECT_THAT(Show(hf.Split("abcd", true)), ElementsAre("1:ab", "-1:cd"));
}

TEST(SpecialTokenSplitterTest, StripAndSingleWord) {
  SpecialTokenRule mask{1, "<m>"};
  mask.lstrip = mask.rstrip = true;
  SpecialTokenRule word{2, "cat"};
  word.single_word = true;
  SpecialTokenSplitter s({mask, word}, SpecialTokenSplitter::Order::kLeftmostLongest);
  EXPECT_THAT(Show(s.Split("a  <m>  b", true)), ElementsAre("-1:a", "1:<m>", "-1:b"));
  EXPECT_THAT(Show(s.Split("cat concat cat.", true)),
              ElementsAre("2:cat", "-1: concat ", "2:cat", "-1:."));
}

}  // namespace
}  // namespace tokenfab
