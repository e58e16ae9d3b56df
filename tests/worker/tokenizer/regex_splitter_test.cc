#include "worker/tokenizer/regex_splitter.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "worker/tokenizer/pre_tokenizer.h"

namespace tokenfab {
namespace {

using ::testing::ElementsAre;

std::vector<std::string> SplitBy(std::string_view pattern, std::string_view text,
                                 SplitBehavior behavior, bool invert = false,
                                 bool literal = false) {
  auto splitter = RegexSplitter::Create(pattern, literal);
  EXPECT_TRUE(splitter.ok()) << splitter.status();
  std::vector<std::string_view> pieces;
  (*splitter)->Split(text, behavior, invert, &pieces);
  return {pieces.begin(), pieces.end()};
}

// The examples of Hugging Face's SplitDelimiterBehavior documentation.
TEST(RegexSplitterTest, BehaviorsMatchHuggingFace) {
  const std::string text = "the-final--countdown";
  EXPECT_THAT(SplitBy("-", text, SplitBehavior::kIsolated, false, true),
              ElementsAre("the", "-", "final", "-", "-", "countdown"));
  EXPECT_THAT(SplitBy("-", text, SplitBehavior::kRemoved, false, true),
              ElementsAre("the", "final", "countdown"));
  EXPECT_THAT(SplitBy("-", text, SplitBehavior::kMergedWithPrevious, false, true),
              ElementsAre("the-", "final-", "-", "countdown"));
  EXPECT_THAT(SplitBy("-", text, SplitBehavior::kMergedWithNext, false, true),
              ElementsAre("the", "-final", "-", "-countdown"));
  EXPECT_THAT(SplitBy("-", text, SplitBehavior::kContiguous, false, true),
              ElementsAre("the", "-", "final", "--", "countdown"));
  EXPECT_THAT(SplitBy("\\w+", "ab, cd", SplitBehavior::kRemoved, /*invert=*/true),
              ElementsAre("ab", "cd"));
}

TEST(RegexSplitterTest, Gpt2PatternSplitsWordsSpacesAndContractions) {
  EXPECT_THAT(SplitBy(kGpt2SplitRegex, "I'm  here\n\n 42x", SplitBehavior::kIsolated),
              ElementsAre("I", "'m", " ", " here", "\n\n", " 42", "x"));
}

// PCRE2 counts U+180E as \s; llama.cpp and Oniguruma do not. The splitter
// follows them: U+180E is a symbol-like character, not part of a space run.
TEST(RegexSplitterTest, MongolianVowelSeparatorIsNotWhitespace) {
  EXPECT_THAT(SplitBy(kGpt2SplitRegex, "a\xE1\xA0\x8E b", SplitBehavior::kIsolated),
              ElementsAre("a", "\xE1\xA0\x8E", " b"));
}

// Letters and digits added after PCRE2 10.42's Unicode 14 count as letters
// and digits, as in llama.cpp's tables and Oniguruma.
TEST(RegexSplitterTest, NewerUnicodeLettersAndDigits) {
  // U+11F04 KAWI LETTER A, U+1E4F0 NAG MUNDARI DIGIT ZERO.
  EXPECT_THAT(SplitBy("\\p{L}+",
                      "a\xF0\x91\xBC\x84"
                      "b1",
                      SplitBehavior::kIsolated),
              ElementsAre("a\xF0\x91\xBC\x84"
                          "b",
                          "1"));
  EXPECT_THAT(SplitBy("\\p{N}", "x\xF0\x9E\x93\xB0", SplitBehavior::kIsolated),
              ElementsAre("x", "\xF0\x9E\x93\xB0"));
}

TEST(RegexSplitterTest, BadPatternIsAnError) {
  auto splitter = RegexSplitter::Create("(?<");
  EXPECT_FALSE(splitter.ok());
}

TEST(PreTokenizerTest, LlamaCppTypesAreKnown) {
  EXPECT_TRUE(LlamaCppPreTokenizerFor("llama-bpe")->ignore_merges);
  EXPECT_FALSE(LlamaCppPreTokenizerFor("qwen2")->ignore_merges);
  EXPECT_EQ(LlamaCppPreTokenizerFor("smollm")->regexes.size(), 2u);
  EXPECT_EQ(LlamaCppPreTokenizerFor("")->regexes.size(), 1u);
  EXPECT_FALSE(LlamaCppPreTokenizerFor("deepseek-coder").ok());
}

TEST(PreTokenizerTest, MetaspaceFirstPrependsOnlyAtTheStart) {
  PreTokenizer pre;
  PreTokenizer::Metaspace m;
  m.prepend = PreTokenizer::Metaspace::Prepend::kFirst;
  m.split = true;
  pre.AddStep(m);
  EXPECT_THAT(pre.Run("hi  you", /*first_section=*/true),
              ElementsAre("\xE2\x96\x81hi", "\xE2\x96\x81", "\xE2\x96\x81you"));
  EXPECT_THAT(pre.Run("hi", /*first_section=*/false), ElementsAre("hi"));
}

}  // namespace
}  // namespace tokenfab
