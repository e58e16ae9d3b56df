#include "worker/engine/batch_scheduler.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tokenfab {
namespace {

std::unique_ptr<Sequence> MakeSeq(int n_prompt, uint64_t arrival, int priority = 0, int first = 1) {
  auto s = std::make_unique<Sequence>();
  s->request.set_request_id("r" + std::to_string(arrival));
  s->request.set_priority(priority);
  for (int i = 0; i < n_prompt; ++i) s->tokens.push_back(first + i);
  s->prompt_len = n_prompt;
  s->arrival = arrival;
  return s;
}

// Runs `plan` as if the forward step happened: the sequences' tokens are
// computed and every sequence that reached its end gets one more token.
void Execute(BatchScheduler& sched, const std::vector<ScheduledSequence>& plan) {
  for (const auto& p : plan) {
    sched.Computed(p.seq, p.num_tokens);
    if (p.seq->num_computed == static_cast<int32_t>(p.seq->tokens.size())) p.seq->tokens.push_back(7);
  }
}

TEST(BatchSchedulerTest, ChunksLongPromptsWithinTheTokenBudget) {
  BlockPool pool(64);
  BatchScheduler sched({.max_num_seqs = 8, .max_batched_tokens = 32, .max_queue = 8}, &pool);
  Sequence* a = nullptr;
  {
    auto s = MakeSeq(70, 0);
    a = s.get();
    ASSERT_TRUE(sched.Add(std::move(s)).ok());
  }
  auto plan = sched.Schedule();
  ASSERT_EQ(plan.size(), 1u);
  EXPECT_EQ(plan[0].num_tokens, 32);
  EXPECT_EQ(a->block_table.size(), 2u);
  Execute(sched, plan);
  plan = sched.Schedule();
  EXPECT_EQ(plan[0].num_tokens, 32);
  Execute(sched, plan);
  plan = sched.Schedule();
  EXPECT_EQ(plan[0].num_tokens, 6);  // the rest of the prompt
  Execute(sched, plan);
  EXPECT_EQ(a->tokens.size(), 71u);  // sampled one token
  plan = sched.Schedule();
  EXPECT_EQ(plan[0].num_tokens, 1);  // decode
}

TEST(BatchSchedulerTest, MixesDecodesWithANewPrefillAndRespectsMaxSeqs) {
  BlockPool pool(64);
  BatchScheduler sched({.max_num_seqs = 2, .max_batched_tokens = 20, .max_queue = 8}, &pool);
  ASSERT_TRUE(sched.Add(MakeSeq(10, 0)).ok());
  Execute(sched, sched.Schedule());  // first prefilled, has a token
  ASSERT_TRUE(sched.Add(MakeSeq(40, 1)).ok());
  ASSERT_TRUE(sched.Add(MakeSeq(5, 2)).ok());
  auto plan = sched.Schedule();
  ASSERT_EQ(plan.size(), 2u);
  EXPECT_EQ(plan[0].num_tokens, 1);   // the running decode first
  EXPECT_EQ(plan[1].num_tokens, 19);  // then a chunk of the next prompt
  EXPECT_EQ(sched.running().size(), 2u);
  EXPECT_EQ(sched.waiting().size(), 1u);  // max_num_seqs
}

TEST(BatchSchedulerTest, AdmitsByPriorityThenArrival) {
  BlockPool pool(64);
  BatchScheduler sched({.max_num_seqs = 1, .max_batched_tokens = 64, .max_queue = 8}, &pool);
  ASSERT_TRUE(sched.Add(MakeSeq(4, 0, /*priority=*/0)).ok());
  ASSERT_TRUE(sched.Add(MakeSeq(4, 1, /*priority=*/5)).ok());
  auto plan = sched.Schedule();
  ASSERT_EQ(plan.size(), 1u);
  EXPECT_EQ(plan[0].seq->arrival, 1u);
}

TEST(BatchSchedulerTest, PreemptsTheNewestWhenBlocksRunOut) {
  BlockPool pool(3);  // 48 token slots
  BatchScheduler sched({.max_num_seqs = 4, .max_batched_tokens = 64, .max_queue = 8}, &pool);
  ASSERT_TRUE(sched.Add(MakeSeq(16, 0)).ok());
  ASSERT_TRUE(sched.Add(MakeSeq(16, 1, 0, 100)).ok());
  Execute(sched, sched.Schedule());  // both prefilled: 2 blocks, each has 17 tokens
  EXPECT_EQ(pool.num_used(), 2);
  // Both need a second block for their 17th token; only one is left.
  auto plan = sched.Schedule();
  ASSERT_EQ(plan.size(), 1u);
  EXPECT_EQ(plan[0].seq->arrival, 0u);
  EXPECT_EQ(sched.preemptions(), 1);
  ASSERT_EQ(sched.waiting().size(), 1u);
  const Sequence& preempted = *sched.waiting().front();
  EXPECT_EQ(preempted.num_computed, 0);
  EXPECT_TRUE(preempted.block_table.empty());
  EXPECT_EQ(preempted.tokens.size(), 17u);  // keeps its generated token
}

TEST(BatchSchedulerTest, ReusesACachedPrefixButComputesTheLastToken) {
  BlockPool pool(16);
  BatchScheduler sched({.max_num_seqs = 4, .max_batched_tokens = 64, .max_queue = 8}, &pool);
  auto first = MakeSeq(32, 0);
  Sequence* f = first.get();
  ASSERT_TRUE(sched.Add(std::move(first)).ok());
  Execute(sched, sched.Schedule());
  sched.Remove(f);  // finished; its two full blocks stay cached
  ASSERT_TRUE(sched.Add(MakeSeq(32, 1)).ok());  // the same 32 tokens
  auto plan = sched.Schedule();
  ASSERT_EQ(plan.size(), 1u);
  // Only the first block may come from the cache: the last token must run.
  EXPECT_EQ(plan[0].seq->cached_tokens, 16);
  EXPECT_EQ(plan[0].num_tokens, 16);
}

TEST(BatchSchedulerTest, QueueLimit) {
  BlockPool pool(4);
  BatchScheduler sched({.max_num_seqs = 1, .max_batched_tokens = 16, .max_queue = 1}, &pool);
  ASSERT_TRUE(sched.Add(MakeSeq(4, 0)).ok());
  EXPECT_EQ(sched.Add(MakeSeq(4, 1)).code(), absl::StatusCode::kResourceExhausted);
}

}  // namespace
}  // namespace tokenfab
