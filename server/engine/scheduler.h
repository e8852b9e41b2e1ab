// Continuous-batching scheduler for the engine (vLLM V1 style): no prefill/decode phases, only
// token counts. It owns the waiting queue (bounded, FIFO), the running set (ordered by
// admission) and every sequence's known tokens (prompt + generated) and computed count; the
// BlockManager it is given owns the KV blocks. Each step: schedule() -> forward of
// build_batch(plan) -> update(sampled tokens). No tensors, no model, no clocks.
//
// Per step, schedule():
//   1. every running sequence whose known tokens are all computed but the newest sampled one
//      gets 1 decode token (BlockManager::append_slot). When no block is free, the most
//      recently admitted running sequence is preempted (its blocks freed, it goes back to the
//      FRONT of the waiting queue keeping its generated tokens, and later recomputes
//      prompt + generated), repeatedly, possibly the decoding sequence itself;
//   2. partially prefilled sequences continue, then waiting ones are admitted FIFO while
//      running < max_running and token budget remains (none in a step that preempted). A new
//      sequence gets blocks for all its known tokens via BlockManager::allocate; its
//      prefix-cache hit is not recomputed. Prefills are chunked to the remaining budget.
//      Images the media cache does not hold yet are encoded in the step that admits their
//      sequence: at most image_budget of them per step (the step's first sequence with new
//      images always gets them all), and only while they fit the cache's room not referenced
//      by running jobs (else the sequence waits, unless nothing runs that could free room).
//      Admission stops at the first sequence that does not fit (no head-of-line skipping).
// A computed token counts as computed from the moment it is scheduled; update() then
// registers the now-written full blocks in the prefix cache (commit_full_blocks).
//
// Not thread-safe: owned and called only by the engine thread.
#pragma once

#include <cstdint>
#include <deque>
#include <span>
#include <unordered_map>
#include <vector>

#include "model/batch.h"
#include "server/engine/block_manager.h"
#include "server/engine/job_status.h"
#include "server/engine/media_cache.h"

namespace flamingo {

struct SequenceRequest {
  int64_t id = 0;
  std::vector<int32_t> prompt;          // [P] token ids, P >= 1
  std::vector<int32_t> image_of_token;  // [P] index into image_hashes, -1 = no image
  std::vector<uint64_t> image_hashes;   // [images] content hash per image index
  int32_t max_new_tokens = 1;           // >= 1; 0 for a scoring sequence
  // > 0: a scoring (prefill-only) sequence: the logits that predict tokens [score_from, P)
  // (positions score_from - 1 .. P - 2) come back as logits rows, nothing is sampled, and it
  // finishes once its P tokens are computed. Its prefix-cache hit stops before position
  // score_from - 1. 1 <= score_from < P, and max_new_tokens must be 0.
  int32_t score_from = 0;
};

struct SchedulerConfig {
  int32_t max_running = 32;    // sequences holding KV blocks at once
  int32_t max_queued = 256;    // add() refuses beyond this many waiting requests
  int32_t token_budget = 512;  // tokens per step; must be >= max_running
  int32_t image_budget = 0;    // images to encode per step; 0: no limit
};

struct SeqChunk {
  int64_t id = 0;
  int32_t begin = 0, end = 0;  // token positions [begin, end) computed this step
  bool wants_logits = false;   // end reaches the last known token: sample from row end - 1
  // Scoring sequences: positions [score_begin, score_end) within [begin, end) whose logits
  // rows are returned (empty for generating sequences).
  int32_t score_begin = 0, score_end = 0;
};

struct StepPlan {
  std::vector<SeqChunk> chunks;  // at most one per sequence; decodes first, then prefills
  int32_t num_tokens() const;
  // Logits rows of the forward: per chunk its score positions, then its sampling row.
  int32_t num_logit_rows() const;
};

// One sampled token for a chunk with wants_logits. finished: the caller's stop decision
// (EOS, stop string); the token is still appended and counted.
struct StepResult {
  int64_t id = 0;
  int32_t token = 0;
  bool finished = false;
};

struct FinishedSeq {
  int64_t id = 0;
  // kLength: max_new_tokens reached, or a scoring sequence whose tokens are all computed;
  // kStop: the caller flagged it (StepResult::finished).
  JobStatus status = JobStatus::kLength;
};

class Scheduler {
 public:
  enum class AddResult {
    kQueued,
    kQueueFull,  // max_queued requests already waiting
    kTooLong,    // prompt + max_new_tokens - 1 KV slots exceed the whole cache
  };

  // Throws flamingo::Error unless 1 <= max_running <= token_budget, max_queued >= 0 and
  // image_budget >= 0. `media` (may be null: images cost nothing) is consulted, never changed:
  // the engine acquires the planned jobs' images; each costs image_bytes.
  Scheduler(SchedulerConfig config, BlockManager& blocks, const MediaCache* media = nullptr,
            int64_t image_bytes = 0);

  // Throws flamingo::Error on a duplicate id, empty prompt, image_of_token size != prompt size,
  // an image index outside [-1, images) or max_new_tokens < 1.
  AddResult add(SequenceRequest request);
  // Removes a waiting or running sequence and frees its blocks now; false if unknown. Results
  // for it in a pending update() are ignored.
  bool abort(int64_t id);

  // Throws flamingo::Error if the previous non-empty plan has not been passed to update().
  StepPlan schedule();
  // The flattened forward input for `plan` (the last schedule()): one block_tables row per
  // chunk, logit_rows in chunk order: a chunk's score positions, then its sampling row when it
  // wants_logits (StepPlan::num_logit_rows). image_of_token is the
  // request's own image index (generated tokens take the last prompt token's) plus
  // image_base[row] when image_base is given (one entry per chunk), else unshifted.
  FlatBatch build_batch(const StepPlan& plan, std::span<const int32_t> image_base = {}) const;
  // Applies the results of the last plan: commits written full blocks, appends each sampled
  // token, finishes sequences at max_new_tokens or when flagged and scoring sequences whose
  // tokens are all computed (kLength), frees their blocks. Throws
  // flamingo::Error, state unchanged, if a result names no wants_logits chunk of the last
  // plan, appears twice, or a live wants_logits chunk has no result. update({}) after every
  // sequence of the plan was aborted closes it (what the engine does after a failed step).
  std::vector<FinishedSeq> update(std::span<const StepResult> results);

  int32_t num_waiting() const { return static_cast<int32_t>(waiting_.size()); }
  int32_t num_running() const { return static_cast<int32_t>(running_.size()); }
  bool has_work() const { return !waiting_.empty() || !running_.empty(); }
  bool contains(int64_t id) const { return seqs_.count(id) != 0; }
  const std::deque<int64_t>& waiting_ids() const { return waiting_; }   // queue order
  const std::vector<int64_t>& running_ids() const { return running_; }  // admission order
  // The following throw flamingo::Error on an unknown id.
  const std::vector<int32_t>& tokens(int64_t id) const;  // prompt + generated
  int32_t num_computed(int64_t id) const;
  int32_t num_generated(int64_t id) const;

 private:
  struct Seq {
    SequenceRequest request;
    std::vector<int32_t> tokens;       // prompt + generated
    std::vector<int32_t> images;       // per token: request image index, -1 = none
    std::vector<uint64_t> image_hash;  // per token: content hash, 0 = none
    int32_t num_computed = 0;          // tokens whose KV is written or scheduled
  };

  Seq& seq_or_throw(int64_t id);
  const Seq& seq_or_throw(int64_t id) const;
  void preempt_newest();
  // Images of `s` that the media cache does not hold and `counted` does not list.
  std::vector<uint64_t> new_images(const Seq& s, const std::vector<uint64_t>& counted) const;
  static SeqChunk chunk_of(int64_t id, const Seq& s, int32_t begin, int32_t end);

  SchedulerConfig config_;
  BlockManager& blocks_;
  const MediaCache* media_;
  int64_t image_bytes_;
  std::unordered_map<int64_t, Seq> seqs_;
  std::deque<int64_t> waiting_;
  std::vector<int64_t> running_;
  StepPlan last_plan_;                    // awaiting update() while pending_update_
  std::vector<int64_t> aborted_in_step_;  // aborted since the last schedule(): results ignored
  bool pending_update_ = false;
};

}  // namespace flamingo
