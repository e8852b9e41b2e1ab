// Scheduler: every expected plan below is worked out by hand from the rules in scheduler.h with
// block_size 4 (a prompt of P tokens takes ceil(P / 4) blocks; a decode at position p takes a
// new block when p % 4 == 0). Covers prefill then decode to max_new_tokens, batching, token
// budget chunking, max_running, queue bounds, kTooLong, abort (waiting, running, mid-step),
// prefix-cache hits (and image hashes separating them), preemption of the newest sequence with
// FIFO resume and no head-of-line skipping, FlatBatch slots against the slot formula, and the
// update() contract checks.
#include "server/engine/scheduler.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "tests/server/engine/scheduler_test_util.h"

namespace flamingo {
namespace {

using namespace flamingo::testing;

TEST(SchedulerTest, SingleRequestPrefillThenDecodeToMaxNewTokens) {
  BlockManager bm(16, kBs);
  Scheduler s(config(4, 16), bm);
  ASSERT_EQ(s.add(text_request(1, 6, 3)), Scheduler::AddResult::kQueued);
  EXPECT_EQ(s.num_waiting(), 1);

  const StepPlan p1 = s.schedule();
  expect_plan(p1, {{1, 0, 6, true}});
  EXPECT_EQ(bm.num_free_blocks(), 14);  // ceil(6 / 4) = 2 blocks
  expect_batch_consistent(s, bm, p1, s.build_batch(p1));
  EXPECT_TRUE(s.update(std::vector<StepResult>{{1, 100, false}}).empty());

  expect_plan(s.schedule(), {{1, 6, 7, true}});  // position 6 still fits block 1
  EXPECT_EQ(bm.num_free_blocks(), 14);
  EXPECT_TRUE(s.update(std::vector<StepResult>{{1, 101, false}}).empty());

  expect_plan(s.schedule(), {{1, 7, 8, true}});
  EXPECT_EQ(std::vector<int32_t>(s.tokens(1).begin() + 6, s.tokens(1).end()),
            (std::vector<int32_t>{100, 101}));
  const auto fin = s.update(std::vector<StepResult>{{1, 102, false}});
  ASSERT_EQ(fin.size(), 1u);
  EXPECT_EQ(fin[0].id, 1);
  EXPECT_EQ(fin[0].status, JobStatus::kLength);
  EXPECT_EQ(bm.num_free_blocks(), 16);
  EXPECT_FALSE(s.has_work());
  EXPECT_FALSE(s.contains(1));
  EXPECT_TRUE(s.schedule().chunks.empty());
}

TEST(SchedulerTest, CallerStopFlagFinishesEarly) {
  BlockManager bm(16, kBs);
  Scheduler s(config(4, 16), bm);
  s.add(text_request(1, 3, 10));
  s.schedule();
  const auto fin = s.update(std::vector<StepResult>{{1, 2, true}});
  ASSERT_EQ(fin.size(), 1u);
  EXPECT_EQ(fin[0].status, JobStatus::kStop);
  EXPECT_EQ(bm.num_free_blocks(), 16);
}

TEST(SchedulerTest, TwoRequestsBatchedInOneStep) {
  BlockManager bm(16, kBs);
  Scheduler s(config(4, 16), bm);
  s.add(text_request(1, 5, 4, 100));
  s.add(text_request(2, 3, 4, 200));
  const StepPlan p1 = s.schedule();
  expect_plan(p1, {{1, 0, 5, true}, {2, 0, 3, true}});
  const FlatBatch b1 = s.build_batch(p1);
  EXPECT_EQ(b1.token_ids, (std::vector<int32_t>{100, 101, 102, 103, 104, 200, 201, 202}));
  EXPECT_EQ(b1.seq_of_token, (std::vector<int32_t>{0, 0, 0, 0, 0, 1, 1, 1}));
  EXPECT_EQ(b1.logit_rows, (std::vector<int32_t>{4, 7}));
  expect_batch_consistent(s, bm, p1, b1);
  s.update(std::vector<StepResult>{{2, 21, false}, {1, 11, false}});  // any order

  const StepPlan p2 = s.schedule();
  expect_plan(p2, {{1, 5, 6, true}, {2, 3, 4, true}});
  const FlatBatch b2 = s.build_batch(p2);
  EXPECT_EQ(b2.token_ids, (std::vector<int32_t>{11, 21}));
  EXPECT_EQ(b2.positions, (std::vector<int32_t>{5, 3}));
  EXPECT_EQ(b2.logit_rows, (std::vector<int32_t>{0, 1}));
  expect_batch_consistent(s, bm, p2, b2);
}

TEST(SchedulerTest, TokenBudgetChunksLongPromptAndDecodesGoFirst) {
  BlockManager bm(16, kBs);
  Scheduler s(config(2, 4), bm);
  s.add(text_request(1, 10, 5, 100));
  s.add(text_request(2, 3, 5, 200));

  const StepPlan p1 = s.schedule();  // budget 4 all used by seq 1: seq 2 not admitted
  expect_plan(p1, {{1, 0, 4, false}});
  EXPECT_EQ(s.num_running(), 1);
  EXPECT_EQ(s.num_waiting(), 1);
  EXPECT_TRUE(s.build_batch(p1).logit_rows.empty());
  s.update({});

  const StepPlan p2 = s.schedule();
  expect_plan(p2, {{1, 4, 8, false}});
  EXPECT_EQ(s.build_batch(p2).positions, (std::vector<int32_t>{4, 5, 6, 7}));
  expect_batch_consistent(s, bm, p2, s.build_batch(p2));
  s.update({});

  const StepPlan p3 = s.schedule();  // 2 left of seq 1, then seq 2 gets the other 2
  expect_plan(p3, {{1, 8, 10, true}, {2, 0, 2, false}});
  expect_batch_consistent(s, bm, p3, s.build_batch(p3));
  s.update(std::vector<StepResult>{{1, 50, false}});

  const StepPlan p4 = s.schedule();  // decode first, then the rest of seq 2's prompt
  expect_plan(p4, {{1, 10, 11, true}, {2, 2, 3, true}});
  const FlatBatch b4 = s.build_batch(p4);
  EXPECT_EQ(b4.token_ids, (std::vector<int32_t>{50, 202}));
  EXPECT_EQ(b4.positions, (std::vector<int32_t>{10, 2}));
  expect_batch_consistent(s, bm, p4, b4);
}

TEST(SchedulerTest, MaxRunningRespected) {
  BlockManager bm(16, kBs);
  Scheduler s(config(2, 16), bm);
  s.add(text_request(1, 2, 1));
  s.add(text_request(2, 2, 5));
  s.add(text_request(3, 2, 5));
  expect_plan(s.schedule(), {{1, 0, 2, true}, {2, 0, 2, true}});
  EXPECT_EQ(s.num_running(), 2);
  EXPECT_EQ(s.waiting_ids(), (std::deque<int64_t>{3}));
  const auto fin = s.update(std::vector<StepResult>{{1, 7, false}, {2, 8, false}});
  ASSERT_EQ(fin.size(), 1u);  // seq 1 reached max_new_tokens = 1
  EXPECT_EQ(fin[0].id, 1);
  expect_plan(s.schedule(), {{2, 2, 3, true}, {3, 0, 2, true}});
  EXPECT_EQ(s.running_ids(), (std::vector<int64_t>{2, 3}));
}

TEST(SchedulerTest, QueueFullAndTooLong) {
  BlockManager bm(4, kBs);  // 16 slots in all
  Scheduler s(config(1, 16, 2), bm);
  // 10 + 7 - 1 = 16 slots fit exactly; one more new token does not; nor 17 prompt tokens.
  EXPECT_EQ(s.add(text_request(1, 10, 8)), Scheduler::AddResult::kTooLong);
  EXPECT_EQ(s.add(text_request(1, 17, 1)), Scheduler::AddResult::kTooLong);
  EXPECT_FALSE(s.contains(1));
  EXPECT_EQ(s.add(text_request(1, 10, 7)), Scheduler::AddResult::kQueued);
  EXPECT_EQ(s.add(text_request(2, 2, 1)), Scheduler::AddResult::kQueued);
  EXPECT_EQ(s.add(text_request(3, 2, 1)), Scheduler::AddResult::kQueueFull);
  EXPECT_FALSE(s.contains(3));
  EXPECT_EQ(s.num_waiting(), 2);
  s.schedule();  // admits seq 1 (max_running 1): one place frees in the queue
  EXPECT_EQ(s.add(text_request(3, 2, 1)), Scheduler::AddResult::kQueued);
  expect_error([&] { s.add(text_request(3, 2, 1)); }, "seq 3 already exists");
  expect_error([&] { s.add(text_request(9, 0, 1)); }, "0 prompt tokens");
  expect_error([&] { s.add(text_request(9, 2, 0)); }, "max_new_tokens must be >= 1, got 0");
  SequenceRequest bad_image = text_request(9, 2, 1);
  bad_image.image_of_token[1] = 0;  // no image hashes given
  expect_error([&] { s.add(bad_image); }, "image_of_token 0 outside [-1, 0)");
  expect_error([&] { Scheduler(config(4, 3), bm); }, "token_budget must be >= max_running 4");
}

TEST(SchedulerTest, AbortWaitingAndRunningFreesBlocks) {
  BlockManager bm(8, kBs);
  Scheduler s(config(1, 16), bm);
  s.add(text_request(1, 6, 4));
  s.add(text_request(2, 5, 4));
  s.schedule();
  s.update(std::vector<StepResult>{{1, 9, false}});
  EXPECT_EQ(bm.num_free_blocks(), 6);
  EXPECT_TRUE(s.abort(2));  // waiting
  EXPECT_EQ(s.num_waiting(), 0);
  EXPECT_EQ(bm.num_free_blocks(), 6);
  EXPECT_TRUE(s.abort(1));  // running
  EXPECT_EQ(bm.num_free_blocks(), 8);
  EXPECT_FALSE(bm.contains(1));
  EXPECT_FALSE(s.abort(1));
  EXPECT_FALSE(s.has_work());
}

TEST(SchedulerTest, AbortBetweenScheduleAndUpdateIgnoresItsResult) {
  BlockManager bm(8, kBs);
  Scheduler s(config(2, 16), bm);
  s.add(text_request(1, 6, 4));
  s.add(text_request(2, 5, 4));
  const StepPlan plan = s.schedule();
  EXPECT_TRUE(s.abort(1));
  EXPECT_EQ(bm.num_free_blocks(), 6);  // seq 2 keeps ceil(5 / 4) = 2
  EXPECT_TRUE(s.update(std::vector<StepResult>{{1, 5, false}, {2, 6, false}}).empty());
  EXPECT_EQ(s.tokens(2).size(), 6u);
  expect_plan(s.schedule(), {{2, 5, 6, true}});
}

TEST(SchedulerTest, PrefixCacheHitStartsPrefillAtCachedCount) {
  BlockManager bm(16, kBs);
  Scheduler s(config(4, 32), bm);
  s.add(text_request(1, 10, 4));
  expect_plan(s.schedule(), {{1, 0, 10, true}});
  s.update(std::vector<StepResult>{{1, 9, false}});  // commits 10 / 4 = 2 full blocks

  s.add(text_request(2, 10, 4));  // same prompt: 2 cached blocks, cap (10-1)/4 = 2
  s.add(text_request(3, 8, 4));   // its first 8 tokens: cap (8-1)/4 = 1 block
  SequenceRequest other_image = text_request(4, 10, 4);  // same ids after an image
  other_image.image_hashes = {77};
  for (int32_t& image : other_image.image_of_token) image = 0;
  s.add(other_image);
  const StepPlan plan = s.schedule();
  expect_plan(plan, {{1, 10, 11, true}, {2, 8, 10, true}, {3, 4, 8, true}, {4, 0, 10, true}});
  EXPECT_EQ(bm.block_table(2)[0], bm.block_table(1)[0]);
  EXPECT_EQ(bm.block_table(2)[1], bm.block_table(1)[1]);
  EXPECT_EQ(bm.block_table(3)[0], bm.block_table(1)[0]);
  EXPECT_NE(bm.block_table(4)[0], bm.block_table(1)[0]);
  expect_batch_consistent(s, bm, plan, s.build_batch(plan));
}

// A: 4-token prompt (1 block), B: 14-token prompt (4 blocks), 5 blocks in all. After both
// prefill, A's decode at position 4 needs a 6th block: B, the newest, is preempted.
TEST(SchedulerTest, PreemptsNewestWhichResumesFirstWithoutHeadOfLineSkipping) {
  BlockManager bm(5, kBs, /*enable_prefix_caching=*/false);
  Scheduler s(config(4, 32), bm);
  s.add(text_request(1, 4, 3, 100));
  s.add(text_request(2, 14, 3, 200));
  expect_plan(s.schedule(), {{1, 0, 4, true}, {2, 0, 14, true}});
  EXPECT_EQ(bm.num_free_blocks(), 0);
  s.update(std::vector<StepResult>{{1, 11, false}, {2, 21, false}});
  s.add(text_request(3, 2, 1, 300));  // would fit in 1 block, but queues behind B

  expect_plan(s.schedule(), {{1, 4, 5, true}});  // B preempted; no admission this step
  EXPECT_EQ(s.running_ids(), (std::vector<int64_t>{1}));
  EXPECT_EQ(s.waiting_ids(), (std::deque<int64_t>{2, 3}));
  EXPECT_FALSE(bm.contains(2));
  EXPECT_EQ(bm.num_free_blocks(), 3);  // B's 4 back, A took 1
  EXPECT_EQ(s.num_computed(2), 0);
  EXPECT_EQ(s.num_generated(2), 1);  // its sampled token is kept
  s.update(std::vector<StepResult>{{1, 12, false}});

  // B needs ceil(15 / 4) = 4 blocks, 3 free: admission stops there, C is not skipped ahead.
  expect_plan(s.schedule(), {{1, 5, 6, true}});
  EXPECT_EQ(s.waiting_ids(), (std::deque<int64_t>{2, 3}));
  EXPECT_EQ(std::vector<int32_t>(s.tokens(1).begin() + 4, s.tokens(1).end()),
            (std::vector<int32_t>{11, 12}));
  const auto fin = s.update(std::vector<StepResult>{{1, 13, false}});
  ASSERT_EQ(fin.size(), 1u);
  EXPECT_EQ(fin[0].id, 1);
  EXPECT_EQ(bm.num_free_blocks(), 5);

  // B recomputes prompt + its generated token (positions 0..14), then C.
  const StepPlan p4 = s.schedule();
  expect_plan(p4, {{2, 0, 15, true}, {3, 0, 2, true}});
  const FlatBatch b4 = s.build_batch(p4);
  EXPECT_EQ(b4.token_ids[13], 213);
  EXPECT_EQ(b4.token_ids[14], 21);
  EXPECT_EQ(b4.positions[14], 14);
  expect_batch_consistent(s, bm, p4, b4);
  s.update(std::vector<StepResult>{{2, 22, false}, {3, 31, false}});

  expect_plan(s.schedule(), {{2, 15, 16, true}});
  EXPECT_EQ(std::vector<int32_t>(s.tokens(2).begin() + 14, s.tokens(2).end()),
            (std::vector<int32_t>{21, 22}));
  const auto fin2 = s.update(std::vector<StepResult>{{2, 23, false}});
  ASSERT_EQ(fin2.size(), 1u);
  EXPECT_EQ(fin2[0].id, 2);
  EXPECT_EQ(bm.num_free_blocks(), 5);
  EXPECT_FALSE(s.has_work());
}

// Same shapes with prefix caching: B's 3 committed full blocks stay cached while free (A takes
// B's uncached tail block, which is reused first), so B resumes at position 12.
TEST(SchedulerTest, PreemptedSequenceResumesFromItsCachedPrefix) {
  BlockManager bm(5, kBs);
  Scheduler s(config(4, 32), bm);
  s.add(text_request(1, 4, 3, 100));
  s.add(text_request(2, 14, 3, 200));
  s.schedule();
  s.update(std::vector<StepResult>{{1, 11, false}, {2, 21, false}});
  expect_plan(s.schedule(), {{1, 4, 5, true}});
  s.update(std::vector<StepResult>{{1, 12, false}});
  expect_plan(s.schedule(), {{1, 5, 6, true}});  // 1 fresh + 3 idle hits > 3 free
  s.update(std::vector<StepResult>{{1, 13, false}});
  const StepPlan plan = s.schedule();
  expect_plan(plan, {{2, 12, 15, true}});
  const FlatBatch b = s.build_batch(plan);
  EXPECT_EQ(b.token_ids, (std::vector<int32_t>{212, 213, 21}));
  expect_batch_consistent(s, bm, plan, b);
}

TEST(SchedulerTest, PreemptsItselfWhenItIsTheNewest) {
  // A: 8 tokens (2 blocks), B: 8 tokens (2 blocks), 5 blocks. A's decode at 8 takes the last
  // block; B's decode at 8 finds none and B is the newest: B preempts itself.
  BlockManager bm(5, kBs, false);
  Scheduler s(config(4, 32), bm);
  s.add(text_request(1, 8, 4, 100));
  s.add(text_request(2, 8, 4, 200));
  s.schedule();
  s.update(std::vector<StepResult>{{1, 11, false}, {2, 21, false}});
  expect_plan(s.schedule(), {{1, 8, 9, true}});
  EXPECT_EQ(s.waiting_ids(), (std::deque<int64_t>{2}));
  EXPECT_EQ(bm.num_free_blocks(), 2);
}

TEST(SchedulerTest, BatchImagesFollowRequestAndBase) {
  BlockManager bm(16, kBs);
  Scheduler s(config(4, 16), bm);
  SequenceRequest r = text_request(1, 5, 3);
  r.image_hashes = {5, 6};
  r.image_of_token = {-1, 0, 0, 1, 1};
  s.add(r);
  s.add(text_request(2, 2, 3));
  const StepPlan p1 = s.schedule();
  const std::vector<int32_t> base = {10, 12};
  const FlatBatch b1 = s.build_batch(p1, base);
  EXPECT_EQ(b1.image_of_token, (std::vector<int32_t>{-1, 10, 10, 11, 11, -1, -1}));
  EXPECT_EQ(s.build_batch(p1).image_of_token, (std::vector<int32_t>{-1, 0, 0, 1, 1, -1, -1}));
  expect_error([&] { s.build_batch(p1, std::vector<int32_t>{1}); }, "image_base size 1");
  s.update(std::vector<StepResult>{{1, 7, false}, {2, 8, false}});
  const StepPlan p2 = s.schedule();
  // The generated token sees the last prompt token's image (index 1).
  EXPECT_EQ(s.build_batch(p2, base).image_of_token, (std::vector<int32_t>{11, -1}));
}

TEST(SchedulerTest, UpdateContractViolationsThrowWithoutStateChange) {
  BlockManager bm(16, kBs);
  Scheduler s(config(2, 4), bm);
  s.add(text_request(1, 6, 3));
  s.add(text_request(2, 2, 3));
  expect_plan(s.schedule(), {{1, 0, 4, false}});
  expect_error([&] { s.schedule(); }, "has not been passed to update()");
  expect_error(
      [&] {
        s.update(std::vector<StepResult>{{1, 5, false}});
      },
      "result for seq 1, which has no wants_logits chunk");
  s.update({});
  expect_plan(s.schedule(), {{1, 4, 6, true}, {2, 0, 2, true}});
  expect_error([&] { s.update(std::vector<StepResult>{{1, 5, false}}); }, "no result for seq 2");
  expect_error(
      [&] {
        s.update(std::vector<StepResult>{{1, 5, false}, {1, 6, false}});
      },
      "two results for seq 1");
  EXPECT_EQ(s.tokens(1).size(), 6u);  // nothing appended by the failed calls
  s.update(std::vector<StepResult>{{1, 5, false}, {2, 6, false}});
  EXPECT_EQ(s.num_generated(1), 1);
  EXPECT_EQ(s.num_generated(2), 1);
}

}  // namespace
}  // namespace flamingo
