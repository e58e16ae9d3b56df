#include "worker/chat/jinja_text.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tokenfab::jinja {
namespace {

using ::testing::ElementsAre;

TEST(JinjaTextTest, DecodesAndReencodesUtf8Losslessly) {
  std::string s = "a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80";  // a é € 😀
  EXPECT_EQ(DecodeUtf8(s), (std::u32string{U'a', 0xE9, 0x20AC, 0x1F600}));
  EXPECT_EQ(EncodeUtf8(DecodeUtf8(s)), s);
  EXPECT_EQ(CodePointCount(s), 4);
  // Invalid bytes survive a round trip (surrogateescape).
  std::string bad = "x\xFF\xC3(";
  EXPECT_EQ(EncodeUtf8(DecodeUtf8(bad)), bad);
  EXPECT_EQ(CodePointCount(bad), 4);
}

TEST(JinjaTextTest, StripsPythonWhitespace) {
  EXPECT_EQ(PyStrip(" \t\n\u00a0x y\u3000 ", std::nullopt, true, true), "x y");
  EXPECT_EQ(PyStrip("xxhixx", std::string("x"), true, false), "hixx");
  EXPECT_EQ(PyStrip("www.example.com", std::string("cmowz."), true, true), "example");
  EXPECT_EQ(PyStrip(" \u3000 ", std::nullopt, true, true), "");
  EXPECT_EQ(PyStrip("\xFF a \xC3", std::nullopt, true, true), "\xFF a \xC3");  // invalid bytes kept
  EXPECT_EQ(PyStrip("😀x😀", std::string("😀"), true, true), "x");
}

TEST(JinjaTextTest, SplitsLikePython) {
  EXPECT_THAT(PySplitWhitespace("  a  b c ", -1), ElementsAre("a", "b", "c"));
  EXPECT_THAT(PySplitWhitespace(" a b  c ", 1), ElementsAre("a", "b  c "));
  EXPECT_THAT(PySplit("a,b,,c", ",", -1), ElementsAre("a", "b", "", "c"));
  EXPECT_THAT(PySplit("a,b,c", ",", 1), ElementsAre("a", "b,c"));
  EXPECT_THAT(PyRSplit("a,b,c", ",", 1), ElementsAre("a,b", "c"));
  EXPECT_THAT(PyRSplitWhitespace(" a b  c ", 1), ElementsAre(" a b", "c"));
  EXPECT_THAT(PySplitLines("l1\nl2\r\nl3\rl4", false), ElementsAre("l1", "l2", "l3", "l4"));
  EXPECT_THAT(PySplitLines("a\n\nb\n", true), ElementsAre("a\n", "\n", "b\n"));
}

TEST(JinjaTextTest, CaseMappingBeyondAscii) {
  EXPECT_EQ(PyUpper("straße é ω я"), "STRASSE É Ω Я");
  EXPECT_EQ(PyLower("ÀÉÎ ΣΑΣ Ǆ"), "àéî σας ǆ");
  EXPECT_EQ(PyTitle("hello wORLD they're"), "Hello World They'Re");
  EXPECT_EQ(PyCapitalize("hELLO"), "Hello");
  EXPECT_EQ(PySwapcase("aB"), "Ab");
}

TEST(JinjaTextTest, ReplaceAndCount) {
  EXPECT_EQ(PyReplace("aaa", "a", "b", 2), "bba");
  EXPECT_EQ(PyReplace("ab", "", "-", -1), "-a-b-");
  EXPECT_EQ(PyCount("aaaa", "aa"), 2);
}

TEST(JinjaTextTest, ReprChoosesQuotesAndEscapes) {
  EXPECT_EQ(PyStringRepr("it's"), "\"it's\"");
  EXPECT_EQ(PyStringRepr("say \"x\" it's"), "'say \"x\" it\\'s'");
  EXPECT_EQ(PyStringRepr("a\tb\n\x07\\"), "'a\\tb\\n\\x07\\\\'");
  EXPECT_EQ(PyStringRepr("é\u200b\u00a0"), "'é\\u200b\\xa0'");
}

TEST(JinjaTextTest, SliceIndicesFollowPython) {
  EXPECT_THAT(SliceIndices(5, std::nullopt, std::nullopt, -1), ElementsAre(4, 3, 2, 1, 0));
  EXPECT_THAT(SliceIndices(5, 1, std::nullopt, 2), ElementsAre(1, 3));
  EXPECT_THAT(SliceIndices(5, -2, 100, 1), ElementsAre(3, 4));
  EXPECT_THAT(SliceIndices(5, 10, std::nullopt, 1), ElementsAre());
  EXPECT_EQ(EncodeUtf8(SliceCodePoints(DecodeUtf8("héllo"), std::nullopt, std::nullopt, -1)),
            "olléh");
}

}  // namespace
}  // namespace tokenfab::jinja
