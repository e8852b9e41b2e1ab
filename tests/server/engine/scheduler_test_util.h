// Helpers of the scheduler tests (scheduler_test.cpp, scheduler_scoring_images_test.cpp):
// requests, configs, and plan / batch checks worked out from the rules in scheduler.h with
// block_size kBs. Header-only, test-only.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "model/error.h"
#include "server/engine/scheduler.h"

namespace flamingo::testing {

constexpr int32_t kBs = 4;

// Prompt of n text tokens base, base+1, ...
inline SequenceRequest text_request(int64_t id, int32_t n, int32_t max_new, int32_t base = 1000) {
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
inline SequenceRequest score_request(int64_t id, int32_t n, int32_t score_from,
                                     int32_t base = 1000) {
  SequenceRequest r = text_request(id, n, 0, base);
  r.score_from = score_from;
  return r;
}

inline SchedulerConfig config(int32_t max_running, int32_t budget, int32_t max_queued = 16) {
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

inline void expect_plan(const StepPlan& plan, const std::vector<Chunk>& want) {
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
inline void expect_batch_consistent(const Scheduler& s, const BlockManager& bm,
                                    const StepPlan& plan, const FlatBatch& b) {
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

}  // namespace flamingo::testing
