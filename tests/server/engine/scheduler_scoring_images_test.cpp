// Scheduler: scoring (prefill-only) sequences - their logits rows, their finish, their
// prefix-cache cap - and images in the plan: the per-step image budget and waiting for image
// cache room. Expected plans worked out by hand from scheduler.h with block_size 4.
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "server/engine/media_cache.h"
#include "server/engine/scheduler.h"
#include "tests/server/engine/scheduler_test_util.h"

namespace flamingo {
namespace {

using namespace flamingo::testing;

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
  EXPECT_EQ(fin[0].status, JobStatus::kLength);
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
  EXPECT_EQ(fin[0].status, JobStatus::kLength);
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
  for (int64_t id = 1; id <= 3; ++id)
    none.add(image_request(id, {static_cast<uint64_t>(100 + id)}, 100));
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
