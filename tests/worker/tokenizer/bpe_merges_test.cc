#include "worker/tokenizer/bpe_merges.h"

#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tokenfab {
namespace {

using ::testing::ElementsAre;

TEST(MergeTableTest, LowestRankFirstLeftmostOnTies) {
  // Symbols: a=0 b=1 c=2; merges: (b,c)->12 rank 0, (a,b)->10 rank 1, (a,12)->20 rank 2.
  MergeTable m;
  m.Add(1, 2, 12, 0);
  m.Add(0, 1, 10, 1);
  m.Add(0, 12, 20, 2);
  std::vector<int32_t> ids = {0, 1, 2};
  m.ApplyMerges(&ids);
  EXPECT_THAT(ids, ElementsAre(20));
  // "aaa" with (a,a) -> 5: the leftmost pair merges first.
  MergeTable twice;
  twice.Add(0, 0, 5, 0);
  ids = {0, 0, 0};
  twice.ApplyMerges(&ids);
  EXPECT_THAT(ids, ElementsAre(5, 0));
}

TEST(MergeTableTest, FirstMergeOfAPairWinsAndMissingPiecesNeverMerge) {
  MergeTable m;
  m.Add(0, 1, 7, 3);
  m.Add(0, 1, 8, 9);  // a later duplicate is ignored
  EXPECT_EQ(m.Find(0, 1)->result, 7);
  std::vector<int32_t> ids = {0, -1, 1, 0, 1};
  m.ApplyMerges(&ids);
  EXPECT_THAT(ids, ElementsAre(0, -1, 1, 7));
}

}  // namespace
}  // namespace tokenfab
