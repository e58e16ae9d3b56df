#include "scheduler/kv_index.h"

#include "gtest/gtest.h"

namespace tokenfab {
namespace {

internal::v1::KvEvent Event(internal::v1::KvEvent::Kind kind,
                            std::initializer_list<uint64_t> hashes) {
  internal::v1::KvEvent e;
  e.set_kind(kind);
  for (uint64_t h : hashes) e.add_block_hashes(h);
  return e;
}

TEST(KvIndexTest, PrefixMatchStopsAtTheFirstMissingBlock) {
  KvIndex index;
  index.Apply("a", Event(internal::v1::KvEvent::STORED, {1, 2, 3}));
  index.Apply("b", Event(internal::v1::KvEvent::STORED, {1, 3}));  // 2 missing: only 1 counts
  index.Apply("c", Event(internal::v1::KvEvent::STORED, {2, 3}));  // no first block: no match
  const std::vector<uint64_t> prompt = {1, 2, 3, 4};
  auto m = index.PrefixMatches(prompt);
  EXPECT_EQ(m["a"], 3);
  EXPECT_EQ(m["b"], 1);
  EXPECT_FALSE(m.contains("c"));
}

TEST(KvIndexTest, RemovedEventsAndSnapshotsReplaceWhatAWorkerHeld) {
  KvIndex index;
  index.Apply("a", Event(internal::v1::KvEvent::STORED, {1, 2, 3}));
  index.Apply("a", Event(internal::v1::KvEvent::REMOVED, {2}));
  const std::vector<uint64_t> prompt = {1, 2, 3};
  EXPECT_EQ(index.PrefixMatches(prompt)["a"], 1);
  EXPECT_EQ(index.BlocksOf("a"), 2);
  const std::vector<uint64_t> snapshot = {1, 2};
  index.Replace("a", snapshot);
  EXPECT_EQ(index.PrefixMatches(prompt)["a"], 2);
  EXPECT_EQ(index.BlocksOf("a"), 2);
  index.RemoveWorker("a");
  EXPECT_TRUE(index.PrefixMatches(prompt).empty());
  EXPECT_EQ(index.BlocksOf("a"), 0);
}

}  // namespace
}  // namespace tokenfab
