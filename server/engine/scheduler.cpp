#include "server/engine/scheduler.h"

#include <algorithm>
#include <string>
#include <unordered_set>
#include <utility>

#include "model/error.h"

namespace flamingo {
namespace {

[[noreturn]] void fail(const std::string& message) { throw Error("scheduler: " + message); }

std::string seq_name(int64_t id) { return "seq " + std::to_string(id); }

}  // namespace

int32_t StepPlan::num_tokens() const {
  int32_t n = 0;
  for (const SeqChunk& c : chunks) n += c.end - c.begin;
  return n;
}

int32_t StepPlan::num_logit_rows() const {
  int32_t n = 0;
  for (const SeqChunk& c : chunks) n += c.score_end - c.score_begin + (c.wants_logits ? 1 : 0);
  return n;
}

Scheduler::Scheduler(SchedulerConfig config, BlockManager& blocks, const MediaCache* media,
                     int64_t image_bytes)
    : config_(config), blocks_(blocks), media_(media), image_bytes_(image_bytes) {
  if (config.max_running < 1) {
    fail("max_running must be >= 1, got " + std::to_string(config.max_running));
  }
  if (config.token_budget < config.max_running) {
    fail("token_budget must be >= max_running " + std::to_string(config.max_running) + ", got " +
         std::to_string(config.token_budget));
  }
  if (config.max_queued < 0) {
    fail("max_queued must be >= 0, got " + std::to_string(config.max_queued));
  }
  if (config.image_budget < 0) {
    fail("image_budget must be >= 0, got " + std::to_string(config.image_budget));
  }
}

// ---- requests in and out ----

Scheduler::AddResult Scheduler::add(SequenceRequest request) {
  const int64_t id = request.id;
  if (contains(id)) fail("add: " + seq_name(id) + " already exists");
  const size_t n = request.prompt.size();
  if (n == 0) fail("add: " + seq_name(id) + " has 0 prompt tokens");
  if (request.image_of_token.size() != n) {
    fail("add: " + seq_name(id) + " image_of_token size " +
         std::to_string(request.image_of_token.size()) + " != prompt size " + std::to_string(n));
  }
  const auto num_images = static_cast<int64_t>(request.image_hashes.size());
  for (int32_t image : request.image_of_token) {
    if (image < -1 || image >= num_images) {
      fail("add: " + seq_name(id) + " image_of_token " + std::to_string(image) + " outside [-1, " +
           std::to_string(num_images) + ")");
    }
  }
  const bool scoring = request.score_from != 0;
  if (scoring && (request.score_from < 1 || request.score_from >= static_cast<int32_t>(n) ||
                  request.max_new_tokens != 0)) {
    fail("add: " + seq_name(id) + " score_from " + std::to_string(request.score_from) +
         " must be in [1, " + std::to_string(n) + ") with max_new_tokens 0, got max_new_tokens " +
         std::to_string(request.max_new_tokens));
  }
  if (!scoring && request.max_new_tokens < 1) {
    fail("add: " + seq_name(id) + " max_new_tokens must be >= 1, got " +
         std::to_string(request.max_new_tokens));
  }
  // The last generated token is never fed back, so it needs no KV slot.
  const int64_t slots = static_cast<int64_t>(n) + (scoring ? 0 : request.max_new_tokens - 1);
  const int64_t bs = blocks_.block_size();
  if ((slots + bs - 1) / bs > blocks_.num_blocks()) return AddResult::kTooLong;
  if (num_waiting() >= config_.max_queued) return AddResult::kQueueFull;

  Seq s;
  s.tokens = request.prompt;
  s.images = request.image_of_token;
  for (int32_t image : s.images)
    s.image_hash.push_back(image < 0 ? 0 : request.image_hashes[image]);
  s.request = std::move(request);
  seqs_.emplace(id, std::move(s));
  waiting_.push_back(id);
  return AddResult::kQueued;
}

bool Scheduler::abort(int64_t id) {
  if (!contains(id)) return false;
  if (blocks_.contains(id)) blocks_.free(id);
  std::erase(waiting_, id);
  std::erase(running_, id);
  std::erase_if(last_plan_.chunks, [id](const SeqChunk& c) { return c.id == id; });
  if (pending_update_) aborted_in_step_.push_back(id);
  seqs_.erase(id);
  return true;
}

// ---- scheduling ----

std::vector<uint64_t> Scheduler::new_images(const Seq& s,
                                            const std::vector<uint64_t>& counted) const {
  std::vector<uint64_t> out;
  if (media_ == nullptr) return out;
  for (uint64_t key : s.request.image_hashes) {
    if (media_->contains(key) || std::find(counted.begin(), counted.end(), key) != counted.end() ||
        std::find(out.begin(), out.end(), key) != out.end()) {
      continue;
    }
    out.push_back(key);
  }
  return out;
}

SeqChunk Scheduler::chunk_of(int64_t id, const Seq& s, int32_t begin, int32_t end) {
  const auto n = static_cast<int32_t>(s.tokens.size());
  SeqChunk c{id, begin, end, end == n && s.request.score_from == 0};
  if (s.request.score_from > 0) {
    c.score_begin = std::clamp(s.request.score_from - 1, begin, end);
    c.score_end = std::clamp(n - 1, c.score_begin, end);
  }
  return c;
}

void Scheduler::preempt_newest() {
  const int64_t victim = running_.back();
  running_.pop_back();
  blocks_.free(victim);
  seqs_.at(victim).num_computed = 0;  // recomputes prompt + generated when readmitted
  waiting_.push_front(victim);
}

StepPlan Scheduler::schedule() {
  if (pending_update_) fail("schedule: the previous plan has not been passed to update()");
  aborted_in_step_.clear();
  StepPlan plan;
  int32_t budget = config_.token_budget;
  bool preempted = false;

  // 1. Decodes: sequences whose only uncomputed token is the newest sampled one (it has no
  // slot yet), oldest first. Preemption takes from the back, never an already planned one.
  for (size_t i = 0; i < running_.size() && budget > 0; ++i) {
    const int64_t id = running_[i];
    Seq& s = seqs_.at(id);
    const auto n = static_cast<int32_t>(s.tokens.size());
    if (blocks_.num_tokens(id) != n - 1) continue;  // still prefilling
    bool ok = blocks_.append_slot(id);
    while (!ok) {
      const bool self = running_.back() == id;
      preempt_newest();
      preempted = true;
      if (self) break;
      ok = blocks_.append_slot(id);
    }
    if (!ok) break;  // it was the newest, so nothing after it is left
    plan.chunks.push_back({id, n - 1, n, true});
    s.num_computed = n;
    --budget;
  }

  // 2a. Running sequences with uncomputed known tokens (all slots allocated): chunked prefill.
  for (const int64_t id : running_) {
    if (budget == 0) break;
    Seq& s = seqs_.at(id);
    const auto n = static_cast<int32_t>(s.tokens.size());
    if (blocks_.num_tokens(id) != n || s.num_computed == n) continue;
    const int32_t end = std::min(n, s.num_computed + budget);
    plan.chunks.push_back(chunk_of(id, s, s.num_computed, end));
    budget -= end - s.num_computed;
    s.num_computed = end;
  }

  // 2b. Admission, FIFO, none in a step that preempted; stop at the first sequence that does
  // not fit (KV blocks, the step's image budget, the image cache's free room).
  std::vector<uint64_t> encoding;  // images this step's admissions will have encoded
  const int64_t image_room =
      media_ ? media_->budget_bytes() - (media_->used_bytes() - media_->evictable_bytes()) : 0;
  while (!preempted && budget > 0 && !waiting_.empty() && num_running() < config_.max_running) {
    const int64_t id = waiting_.front();
    Seq& s = seqs_.at(id);
    const std::vector<uint64_t> fresh = new_images(s, encoding);
    if (!fresh.empty()) {
      const auto after = static_cast<int64_t>(encoding.size() + fresh.size());
      if (config_.image_budget > 0 && !encoding.empty() && after > config_.image_budget) break;
      if (after * image_bytes_ > image_room && !running_.empty()) break;  // wait for room
    }
    const int32_t score_from = s.request.score_from;
    const std::optional<int32_t> cached =
        blocks_.allocate(id, s.tokens, s.image_hash, score_from > 0 ? score_from - 1 : -1);
    if (!cached) break;
    waiting_.pop_front();
    running_.push_back(id);
    encoding.insert(encoding.end(), fresh.begin(), fresh.end());
    const auto n = static_cast<int32_t>(s.tokens.size());
    const int32_t end = std::min(n, *cached + budget);
    plan.chunks.push_back(chunk_of(id, s, *cached, end));
    budget -= end - *cached;
    s.num_computed = end;
  }

  last_plan_ = plan;
  pending_update_ = !plan.chunks.empty();
  return plan;
}

FlatBatch Scheduler::build_batch(const StepPlan& plan, std::span<const int32_t> image_base) const {
  if (!image_base.empty() && image_base.size() != plan.chunks.size()) {
    fail("build_batch: image_base size " + std::to_string(image_base.size()) + " != chunks size " +
         std::to_string(plan.chunks.size()));
  }
  FlatBatch batch;
  for (size_t row = 0; row < plan.chunks.size(); ++row) {
    const SeqChunk& c = plan.chunks[row];
    const Seq& s = seq_or_throw(c.id);
    if (c.begin < 0 || c.begin >= c.end || c.end > static_cast<int32_t>(s.tokens.size())) {
      fail("build_batch: " + seq_name(c.id) + " chunk [" + std::to_string(c.begin) + ", " +
           std::to_string(c.end) + ") outside its " + std::to_string(s.tokens.size()) + " tokens");
    }
    const int32_t base = image_base.empty() ? 0 : image_base[row];
    batch.block_tables.push_back(blocks_.block_table(c.id));
    for (int32_t p = c.begin; p < c.end; ++p) {
      batch.token_ids.push_back(s.tokens[p]);
      batch.positions.push_back(p);
      batch.seq_of_token.push_back(static_cast<int32_t>(row));
      batch.slots.push_back(blocks_.slot_of(c.id, p));
      batch.image_of_token.push_back(s.images[p] < 0 ? -1 : base + s.images[p]);
      if (p >= c.score_begin && p < c.score_end) {
        batch.logit_rows.push_back(static_cast<int32_t>(batch.num_tokens() - 1));
      }
    }
    if (c.wants_logits) batch.logit_rows.push_back(static_cast<int32_t>(batch.num_tokens() - 1));
  }
  return batch;
}

std::vector<FinishedSeq> Scheduler::update(std::span<const StepResult> results) {
  // Validate everything first so that a throw leaves the state unchanged.
  std::unordered_set<int64_t> want;
  for (const SeqChunk& c : last_plan_.chunks) {
    if (c.wants_logits) want.insert(c.id);
  }
  std::unordered_set<int64_t> seen;
  for (const StepResult& r : results) {
    if (std::find(aborted_in_step_.begin(), aborted_in_step_.end(), r.id) !=
        aborted_in_step_.end()) {
      continue;
    }
    if (want.count(r.id) == 0) {
      fail("update: result for " + seq_name(r.id) + ", which has no wants_logits chunk in the " +
           "last plan");
    }
    if (!seen.insert(r.id).second) fail("update: two results for " + seq_name(r.id));
  }
  for (const int64_t id : want) {
    if (seen.count(id) == 0) fail("update: no result for " + seq_name(id) + ", which wants logits");
  }

  for (const SeqChunk& c : last_plan_.chunks) {  // KV of [0, num_computed) is written now
    Seq& s = seqs_.at(c.id);
    const auto done = static_cast<size_t>(s.num_computed);
    blocks_.commit_full_blocks(c.id, std::span(s.tokens).first(done),
                               std::span(s.image_hash).first(done));
  }
  std::vector<FinishedSeq> finished;
  for (const StepResult& r : results) {
    if (want.count(r.id) == 0) continue;  // aborted in this step
    Seq& s = seqs_.at(r.id);
    const int32_t image = s.request.image_of_token.back();
    s.tokens.push_back(r.token);
    s.images.push_back(image);
    s.image_hash.push_back(image < 0 ? 0 : s.request.image_hashes[image]);
    const auto generated = static_cast<int32_t>(s.tokens.size() - s.request.prompt.size());
    if (!r.finished && generated < s.request.max_new_tokens) continue;
    finished.push_back({r.id, r.finished ? JobStatus::kStop : JobStatus::kLength});
  }
  for (const SeqChunk& c : last_plan_.chunks) {
    const Seq& s = seqs_.at(c.id);
    if (s.request.score_from > 0 && s.num_computed == static_cast<int32_t>(s.tokens.size())) {
      finished.push_back({c.id, JobStatus::kLength});
    }
  }
  for (const FinishedSeq& f : finished) {
    blocks_.free(f.id);
    std::erase(running_, f.id);
    seqs_.erase(f.id);
  }
  last_plan_.chunks.clear();
  aborted_in_step_.clear();
  pending_update_ = false;
  return finished;
}

// ---- queries ----

Scheduler::Seq& Scheduler::seq_or_throw(int64_t id) {
  const auto it = seqs_.find(id);
  if (it == seqs_.end()) fail("unknown " + seq_name(id));
  return it->second;
}

const Scheduler::Seq& Scheduler::seq_or_throw(int64_t id) const {
  const auto it = seqs_.find(id);
  if (it == seqs_.end()) fail("unknown " + seq_name(id));
  return it->second;
}

const std::vector<int32_t>& Scheduler::tokens(int64_t id) const { return seq_or_throw(id).tokens; }

int32_t Scheduler::num_computed(int64_t id) const { return seq_or_throw(id).num_computed; }

int32_t Scheduler::num_generated(int64_t id) const {
  const Seq& s = seq_or_throw(id);
  return static_cast<int32_t>(s.tokens.size() - s.request.prompt.size());
}

}  // namespace flamingo
