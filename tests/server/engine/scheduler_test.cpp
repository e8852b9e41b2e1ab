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
#include <set>
#include <string>
#include <vector>

#include "model/error.h"

namespace flamingo {
namespace {

constexpr int32_t kBs = 4;

// Prompt of n text tokens base, base+1, ...
SequenceRequest text_request(int64_t id, int32_t n, int32_t max_new, int32_t base = 1000) {
  SequenceRequest r;
  r.id = id;
  for (int32_t i = 0; i < n; ++i) {
    r.prompt.push_back(base + i);
    r.image_of_token.push_back(-1);
  }
  r.max_new_tokens = max_new;
  return r;
}

// A scoring sequence: n text tokens base, base+1, ...; tokens [score_from, n) are scored.
SequenceRequest score_request(int64_t id, int32_t n, int32_t score_from, int32_t base = 1000) {
  SequenceRequest r = text_request(id, n, 0, base);
  r.score_from = score_from;
  return r;
}

SchedulerConfig config(int32_t max_running, int32_t budget, int32_t max_queued = 16) {
  SchedulerConfig c;
  c.max_running = max_running;
  c.token_budget = budget;
  c.max_queued = max_queued;
  return c;
}

struct Chunk {
  int64_t id;
  int32_t begin, end;
  bool logits;
};

void expect_plan(const StepPlan& plan, const std::vector<Chunk>& want) {
  ASSERT_EQ(plan.chunks.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    SCOPED_TRACE("chunk " + std::to_string(i));
    EXPECT_EQ(plan.chunks[i].id, want[i].id);
    EXPECT_EQ(plan.chunks[i].begin, want[i].begin);
    EXPECT_EQ(plan.chunks[i].end, want[i].end);
    EXPECT_EQ(plan.chunks[i].wants_logits, want[i].logits);
  }
}

// Checks the batch against the plan with independent formulas: slot = table[p / bs] * bs +
// p % bs from BlockManager::block_table, logit rows = the rows of each chunk's score positions,
// then the last row of each wants_logits chunk.
void expect_batch_consistent(const Scheduler& s, const BlockManager& bm, const StepPlan& plan,
                             const FlatBatch& b) {
  ASSERT_EQ(b.num_seqs(), static_cast<int64_t>(plan.chunks.size()));
  ASSERT_EQ(b.num_tokens(), plan.num_tokens());
  ASSERT_EQ(b.positions.size(), b.token_ids.size());
  ASSERT_EQ(b.seq_of_token.size(), b.token_ids.size());
  ASSERT_EQ(b.slots.size(), b.token_ids.size());
  ASSERT_EQ(b.image_of_token.size(), b.token_ids.size());
  std::vector<int32_t> want_logit_rows;
  std::set<int64_t> slots;
  size_t t = 0;
  for (size_t row = 0; row < plan.chunks.size(); ++row) {
    const SeqChunk& c = plan.chunks[row];
    const std::vector<int32_t>& table = bm.block_table(c.id);
    EXPECT_EQ(b.block_tables[row], table);
    for (int32_t p = c.begin; p < c.end; ++p, ++t) {
      EXPECT_EQ(b.token_ids[t], s.tokens(c.id)[p]);
      EXPECT_EQ(b.positions[t], p);
      EXPECT_EQ(b.seq_of_token[t], static_cast<int32_t>(row));
      EXPECT_EQ(b.slots[t], static_cast<int64_t>(table[p / kBs]) * kBs + p % kBs);
      EXPECT_EQ(b.slots[t], bm.slot_of(c.id, p));
      EXPECT_TRUE(slots.insert(b.slots[t]).second) << "slot written twice: " << b.slots[t];
      if (p >= c.score_begin && p < c.score_end) want_logit_rows.push_back(static_cast<int32_t>(t));
    }
    if (c.wants_logits) want_logit_rows.push_back(static_cast<int32_t>(t) - 1);
  }
  EXPECT_EQ(b.logit_rows, want_logit_rows);
  EXPECT_EQ(plan.num_logit_rows(), static_cast<int32_t>(want_logit_rows.size()));
}

template <typename F>
void expect_error(F&& f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "expected flamingo::Error containing '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

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
  EXPECT_EQ(fin[0].reason, FinishReason::kLength);
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
  EXPECT_EQ(fin[0].reason, FinishReason::kStop);
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

// ---- scoring (prefill-only) sequences ----

void expect_score_range(const SeqChunk& c, int32_t begin, int32_t end) {
  EXPECT_EQ(c.score_begin, begin) << "seq " << c.id;
  EXPECT_EQ(c.score_end, end) << "seq " << c.id;
}

// 7 tokens, tokens 4..6 scored: logits of positions 3, 4, 5. Budget 4 splits it [0,4) [4,7).
TEST(SchedulerTest, ScoringSequenceReturnsItsPositionsRowsAndFinishesWhenComputed) {
  BlockManager bm(16, kBs);
  Scheduler s(config(2, 4), bm);
  ASSERT_EQ(s.add(score_request(1, 7, 4)), Scheduler::AddResult::kQueued);
  const StepPlan p1 = s.schedule();
  expect_plan(p1, {{1, 0, 4, false}});
  expect_score_range(p1.chunks[0], 3, 4);
  const FlatBatch b1 = s.build_batch(p1);
  expect_batch_consistent(s, bm, p1, b1);
  EXPECT_EQ(b1.logit_rows, (std::vector<int32_t>{3}));
  EXPECT_TRUE(s.update({}).empty());

  const StepPlan p2 = s.schedule();
  expect_plan(p2, {{1, 4, 7, false}});
  expect_score_range(p2.chunks[0], 4, 6);  // position 6 predicts nothing scored
  const FlatBatch b2 = s.build_batch(p2);
  expect_batch_consistent(s, bm, p2, b2);
  EXPECT_EQ(b2.logit_rows, (std::vector<int32_t>{0, 1}));
  const auto fin = s.update({});
  ASSERT_EQ(fin.size(), 1u);
  EXPECT_EQ(fin[0].id, 1);
  EXPECT_EQ(fin[0].reason, FinishReason::kScored);
  EXPECT_EQ(bm.num_free_blocks(), 16);
  EXPECT_FALSE(s.has_work());
}

// A scoring sequence beside a decoding one: the decode goes first and gets its sampling row;
// the scoring chunk has rows but no sampling row; a result for it is a contract violation.
TEST(SchedulerTest, ScoringSequenceSharesAStepWithADecode) {
  BlockManager bm(16, kBs);
  Scheduler s(config(2, 8), bm);
  s.add(text_request(1, 3, 5));
  s.schedule();
  s.update(std::vector<StepResult>{{1, 50, false}});
  s.add(score_request(2, 5, 2));
  const StepPlan plan = s.schedule();
  expect_plan(plan, {{1, 3, 4, true}, {2, 0, 5, false}});
  expect_score_range(plan.chunks[1], 1, 4);
  const FlatBatch b = s.build_batch(plan);
  expect_batch_consistent(s, bm, plan, b);
  EXPECT_EQ(b.logit_rows, (std::vector<int32_t>{0, 2, 3, 4}));
  expect_error(
      [&] {
        s.update(std::vector<StepResult>{{1, 51, false}, {2, 7, false}});
      },
      "result for seq 2, which has no wants_logits chunk");
  const auto fin = s.update(std::vector<StepResult>{{1, 51, false}});
  ASSERT_EQ(fin.size(), 1u);
  EXPECT_EQ(fin[0].id, 2);
  EXPECT_EQ(fin[0].reason, FinishReason::kScored);
  EXPECT_EQ(s.num_generated(1), 2);
}

// The prefix-cache hit of a scoring sequence stops before its first scored logits position:
// a 9-token sequence commits 2 full blocks; a scoring sequence with the same 9 tokens and more
// reuses both when scoring from 9 (cap 8), only one when scoring from 6 (cap 5).
TEST(SchedulerTest, ScoringSequencePrefixHitStopsBeforeItsFirstScoredPosition) {
  BlockManager bm(16, kBs);
  Scheduler s(config(4, 64), bm);
  s.add(score_request(1, 9, 8));
  s.schedule();
  ASSERT_EQ(s.update({}).size(), 1u);  // finished: its 2 full blocks stay cached
  s.add(score_request(2, 12, 9));
  s.add(score_request(3, 12, 6));
  const StepPlan plan = s.schedule();
  expect_plan(plan, {{2, 8, 12, false}, {3, 4, 12, false}});
  expect_score_range(plan.chunks[0], 8, 11);
  expect_score_range(plan.chunks[1], 5, 11);
  EXPECT_EQ(bm.block_table(2)[0], bm.block_table(3)[0]);
  EXPECT_NE(bm.block_table(2)[1], bm.block_table(3)[1]);
  expect_batch_consistent(s, bm, plan, s.build_batch(plan));
}

TEST(SchedulerTest, ScoringSequenceArgumentsChecked) {
  BlockManager bm(16, kBs);
  Scheduler s(config(2, 8), bm);
  SequenceRequest with_new = score_request(1, 5, 2);
  with_new.max_new_tokens = 1;
  expect_error([&] { s.add(with_new); }, "score_from 2 must be in [1, 5) with max_new_tokens 0");
  expect_error([&] { s.add(score_request(2, 5, 5)); }, "score_from 5 must be in [1, 5)");
  expect_error([&] { s.add(text_request(3, 5, 0)); }, "max_new_tokens must be >= 1, got 0");
  // A scoring sequence needs a slot for each of its tokens, no more: 16 blocks x 4 = 64.
  EXPECT_EQ(s.add(score_request(4, 64, 1)), Scheduler::AddResult::kQueued);
  EXPECT_EQ(s.add(score_request(5, 65, 1)), Scheduler::AddResult::kTooLong);
}

// ---- images in the plan ----

// n text tokens after one image per key in `keys` (each image attends from its own token).
SequenceRequest image_request(int64_t id, const std::vector<uint64_t>& keys, int32_t base) {
  SequenceRequest r = text_request(id, 4, 2, base);
  r.image_hashes = keys;
  for (size_t i = 0; i < keys.size() && i < r.image_of_token.size(); ++i) {
    r.image_of_token[i] = static_cast<int32_t>(i);
  }
  return r;
}

// image_budget 2: step 1 admits A (new image 1), B (new image 2) and C (image 1 again:
// counted once), then stops at D (image 3 would be the third). Step 2 admits D (image 3) and
// stops at E (3 more). In step 3 E comes first: a step's first sequence with new images gets
// all of them, even more than the budget.
TEST(SchedulerTest, ImageBudgetSpreadsNewImagesOverSteps) {
  BlockManager bm(64, kBs);
  MediaCache media(10000);
  SchedulerConfig c = config(8, 64);
  c.image_budget = 2;
  Scheduler s(c, bm, &media, 100);
  s.add(image_request(1, {1}, 100));
  s.add(image_request(2, {2}, 200));
  s.add(image_request(3, {1}, 300));
  s.add(image_request(4, {3}, 400));
  s.add(image_request(5, {4, 5, 6}, 500));
  expect_plan(s.schedule(), {{1, 0, 4, true}, {2, 0, 4, true}, {3, 0, 4, true}});
  // The engine acquires the planned images; they are then cached.
  for (uint64_t key : {1, 2}) ASSERT_TRUE(media.acquire(key, 100));
  s.update(std::vector<StepResult>{{1, 9, false}, {2, 9, false}, {3, 9, false}});
  StepPlan p2 = s.schedule();
  ASSERT_EQ(p2.chunks.size(), 4u);  // three decodes, then D alone
  EXPECT_EQ(p2.chunks[3].id, 4);
  ASSERT_TRUE(media.acquire(3, 100));
  s.update(std::vector<StepResult>{{1, 9, false}, {2, 9, false}, {3, 9, false}, {4, 9, false}});
  const StepPlan p3 = s.schedule();
  EXPECT_EQ(p3.chunks.back().id, 5);  // alone in its step: all 3 new images at once
}

// Images already cached cost nothing; with no media cache (nullptr) nothing is limited.
TEST(SchedulerTest, CachedImagesDoNotCountAgainstTheImageBudget) {
  BlockManager bm(64, kBs);
  MediaCache media(10000);
  for (uint64_t key : {1, 2, 3}) {
    const auto l = media.acquire(key, 100);
    ASSERT_TRUE(l);
    media.release(l->slot);  // cached, unreferenced
  }
  SchedulerConfig c = config(8, 64);
  c.image_budget = 1;
  Scheduler s(c, bm, &media, 100);
  for (int64_t id = 1; id <= 3; ++id) s.add(image_request(id, {static_cast<uint64_t>(id)}, 100));
  EXPECT_EQ(s.schedule().chunks.size(), 3u);

  BlockManager bm2(64, kBs);
  Scheduler none(c, bm2);
  for (int64_t id = 1; id <= 3; ++id) none.add(image_request(id, {100u + id}, 100));
  EXPECT_EQ(none.schedule().chunks.size(), 3u);
}

// The image cache holds 3 images; 2 are referenced by a running job: a sequence with 2 new
// images waits (instead of being admitted and then refused for lack of room) until the
// running job's images are released; with nothing running it is admitted (and the engine
// refuses it if it can never fit).
TEST(SchedulerTest, WaitsForImageCacheRoomWhileOthersRun) {
  BlockManager bm(64, kBs);
  MediaCache media(300);
  Scheduler s(config(8, 64), bm, &media, 100);
  s.add(image_request(1, {1, 2}, 100));
  expect_plan(s.schedule(), {{1, 0, 4, true}});
  const auto a = media.acquire(1, 100);
  const auto b = media.acquire(2, 100);
  ASSERT_TRUE(a && b);
  s.update(std::vector<StepResult>{{1, 9, false}});
  s.add(image_request(2, {3, 4}, 200));
  expect_plan(s.schedule(), {{1, 4, 5, true}});  // 2 waits: 200 bytes, 100 free
  const auto fin = s.update(std::vector<StepResult>{{1, 9, false}});  // max_new_tokens 2
  ASSERT_EQ(fin.size(), 1u);
  media.release(a->slot);
  media.release(b->slot);
  expect_plan(s.schedule(), {{2, 0, 4, true}});  // room now (unreferenced entries evictable)
  s.update(std::vector<StepResult>{{2, 9, false}});

  BlockManager bm2(64, kBs);
  MediaCache small(100);
  Scheduler alone(config(8, 64), bm2, &small, 100);
  alone.add(image_request(7, {8, 9}, 700));
  expect_plan(alone.schedule(), {{7, 0, 4, true}});  // nothing runs that could free room
}

}  // namespace
}  // namespace flamingo
