#include "worker/engine/block_pool.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tokenfab {
namespace {

using internal::v1::KvEvent;
using ::testing::ElementsAre;

TEST(BlockPoolTest, AllocatesUntilEmptyAndReusesReleasedBlocks) {
  BlockPool pool(3);
  auto a = pool.Allocate(), b = pool.Allocate(), c = pool.Allocate();
  ASSERT_TRUE(a && b && c);
  EXPECT_FALSE(pool.Allocate().has_value());
  EXPECT_EQ(pool.num_used(), 3);
  pool.Release(*b);
  EXPECT_EQ(pool.num_used(), 2);
  EXPECT_EQ(pool.Allocate(), b);
}

TEST(BlockPoolTest, CachedPrefixIsFoundAfterItsSequenceEnds) {
  BlockPool pool(4);
  const int32_t b0 = *pool.Allocate(), b1 = *pool.Allocate();
  pool.Commit(b0, 111, 0);
  pool.Commit(b1, 222, 111);
  pool.Release(b0);
  pool.Release(b1);
  EXPECT_EQ(pool.num_used(), 0);
  EXPECT_EQ(pool.num_cached_free(), 2);
  // A new sequence with the same first block (but a different second one).
  const uint64_t wanted[] = {111, 999};
  EXPECT_THAT(pool.AcquireCached(wanted), ElementsAre(b0));
  EXPECT_EQ(pool.num_used(), 1);
  EXPECT_EQ(pool.prefix_queries(), 2);
  EXPECT_EQ(pool.prefix_hits(), 1);
  // Shared: a second sequence takes the same block; it stays used until both release.
  const uint64_t again[] = {111, 222};
  EXPECT_THAT(pool.AcquireCached(again), ElementsAre(b0, b1));
  pool.Release(b0);
  EXPECT_EQ(pool.num_used(), 2);
  pool.Release(b0);
  pool.Release(b1);
  EXPECT_EQ(pool.num_used(), 0);
}

TEST(BlockPoolTest, EvictsTheLeastRecentlyUsedCachedBlockLast) {
  BlockPool pool(3);
  const int32_t a = *pool.Allocate(), b = *pool.Allocate(), c = *pool.Allocate();
  pool.Commit(a, 1, 0);
  pool.Commit(b, 2, 0);
  pool.Commit(c, 3, 0);
  pool.Release(b);  // released first: least recently used
  pool.Release(a);
  pool.Release(c);
  pool.TakeEvents();
  EXPECT_EQ(pool.Allocate(), b);
  const std::vector<KvEvent> events = pool.TakeEvents();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind(), KvEvent::REMOVED);
  EXPECT_THAT(events[0].block_hashes(), ElementsAre(2u));
  // The evicted hash is gone; the others remain.
  const uint64_t two[] = {2};
  EXPECT_TRUE(pool.AcquireCached(two).empty());
  const uint64_t one[] = {1};
  EXPECT_THAT(pool.AcquireCached(one), ElementsAre(a));
}

TEST(BlockPoolTest, StoredEventsCarryTheChain) {
  BlockPool pool(2);
  const int32_t a = *pool.Allocate(), b = *pool.Allocate();
  pool.Commit(a, 10, 0);
  pool.Commit(b, 20, 10);
  pool.Commit(b, 30, 20);  // already holds a hash: ignored
  const std::vector<KvEvent> events = pool.TakeEvents();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[1].kind(), KvEvent::STORED);
  EXPECT_THAT(events[1].block_hashes(), ElementsAre(20u));
  EXPECT_EQ(events[1].parent_hash(), 10u);
  EXPECT_TRUE(pool.TakeEvents().empty());
}

TEST(BlockPoolTest, ADuplicateBlockStaysUncached) {
  BlockPool pool(2);
  const int32_t a = *pool.Allocate(), b = *pool.Allocate();
  pool.Commit(a, 7, 0);
  pool.Commit(b, 7, 0);  // the same prefix computed twice at once
  pool.Release(b);
  EXPECT_EQ(pool.num_cached_free(), 0);  // b went back to the free list
  pool.Release(a);
  EXPECT_EQ(pool.num_cached_free(), 1);
}

}  // namespace
}  // namespace tokenfab
