#include "server/stop_matcher.h"

#include "gtest/gtest.h"

namespace tokenfab {
namespace {

std::string Feed(StopMatcher& m, const std::vector<std::string>& pieces, bool* stopped) {
  std::string out;
  *stopped = false;
  for (const std::string& p : pieces) {
    bool s = false;
    out += m.Push(p, &s);
    if (s) {
      *stopped = true;
      break;
    }
  }
  if (!*stopped) out += m.Flush();
  return out;
}

TEST(StopMatcherTest, StopsBeforeAStopStringSplitAcrossPieces) {
  StopMatcher m({"\n\nUser:", "###"});
  bool stopped;
  EXPECT_EQ(Feed(m, {"Hello", " world\n", "\nUs", "er: hi"}, &stopped), "Hello world");
  EXPECT_TRUE(stopped);
}

TEST(StopMatcherTest, HoldsBackOnlyWhatCouldStartAStopString) {
  StopMatcher m({"STOP"});
  bool s = false;
  EXPECT_EQ(m.Push("abcST", &s), "abc");
  EXPECT_FALSE(s);
  EXPECT_EQ(m.Push("x", &s), "STx");  // not a stop after all
  EXPECT_EQ(m.Push("S", &s), "");
  EXPECT_EQ(m.Flush(), "S");  // the end: what was held back is emitted
}

TEST(StopMatcherTest, TheEarliestStopWins) {
  StopMatcher m({"cd", "b"});
  bool stopped;
  EXPECT_EQ(Feed(m, {"abcd"}, &stopped), "a");
  EXPECT_TRUE(stopped);
}

TEST(StopMatcherTest, NoStopsPassEverythingThrough) {
  StopMatcher m({});
  bool s;
  EXPECT_EQ(m.Push("anything", &s), "anything");
  EXPECT_FALSE(s);
}

TEST(StopMatcherTest, MultiByteCharactersAreNeverSplit) {
  StopMatcher m({"日本"});
  bool stopped;
  EXPECT_EQ(Feed(m, {"東京は", "日", "本の首都"}, &stopped), "東京は");
  EXPECT_TRUE(stopped);
}

}  // namespace
}  // namespace tokenfab
