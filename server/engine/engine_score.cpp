// Score jobs as scheduled work. Each candidate c is a scoring sequence of the scheduler:
// sequences[c + 1] (the prompt's tokens, then the candidate's), scored from first_new[c]. The
// scheduler computes it in token-budget chunks beside running decodes and inside the KV
// budget; the forward returns the logits rows of its scored positions, and the candidate's
// logprob is the sum of log p(token) over its own tokens.
// With prefix caching, candidate 0 runs alone first and the others join when it is done: they
// find the prompt's full blocks in the prefix cache and compute only the rest (the prompt's
// last partial block and their own tokens), so a Score costs ~ prompt + sum of candidates, and
// a repeated prompt costs nothing. Without prefix caching every candidate computes the prompt.
#include <spdlog/spdlog.h>

#include <cmath>
#include <limits>

#include "server/engine/engine_impl.h"

namespace flamingo {

void EngineImpl::start_score(NewScore& s) {
  ActiveScore& run = scoring_[s.id];
  run.job = std::move(s.job);
  run.done = std::move(s.done);
  const size_t candidates = run.job.first_new.size();
  for (size_t c = 0; c < candidates; ++c) {
    run.token_logprobs.emplace_back(run.job.sequences[c + 1].size() - run.job.first_new[c],
                                    std::numeric_limits<double>::quiet_NaN());
  }
  const auto all = static_cast<int32_t>(candidates);
  if (!add_candidates(s.id, run, config_.prefix_caching ? 1 : all)) {
    end_score(s.id, JobStatus::kRejected, "the scheduler refused the request");
  }
}

bool EngineImpl::add_candidates(int64_t job, ActiveScore& run, int32_t count) {
  const auto candidates = static_cast<int32_t>(run.job.first_new.size());
  for (int32_t i = 0; i < count && run.next_candidate < candidates; ++i) {
    const int32_t c = run.next_candidate++;
    SequenceRequest req;
    req.id = next_candidate_seq_--;
    req.prompt = run.job.sequences[c + 1];
    req.image_of_token = run.job.image_of_token[c + 1];
    for (const ImageInput& im : run.job.images) req.image_hashes.push_back(im.key);
    req.max_new_tokens = 0;
    req.score_from = run.job.first_new[c];
    owners_[req.id] = SeqOwner{job, c};
    run.live.push_back(req.id);
    // Admission checked the KV size; the queue bound leaves room for every candidate.
    if (scheduler_->add(std::move(req)) != Scheduler::AddResult::kQueued) return false;
  }
  return true;
}

void EngineImpl::record_scores(const SeqChunk& c, const float* logits, int64_t vocab) {
  const SeqOwner& o = owners_.at(c.id);
  ActiveScore& run = scoring_.at(o.job);
  const std::vector<int32_t>& tokens = run.job.sequences[o.candidate + 1];
  std::vector<double>& out = run.token_logprobs[o.candidate];
  const int32_t from = run.job.first_new[o.candidate];
  run.computed_tokens += c.end - c.begin;
  if (run.last_step != steps_) {
    run.last_step = steps_;
    ++run.steps;
  }
  // Row p predicts token p + 1. A preempted candidate recomputes rows: same values again.
  for (int32_t p = c.score_begin; p < c.score_end; ++p, logits += vocab) {
    out[p + 1 - from] = token_logprob(std::span(logits, vocab), tokens[p + 1]);
  }
}

void EngineImpl::candidate_scored(int64_t seq) {
  const SeqOwner o = owners_.at(seq);
  owners_.erase(seq);
  ActiveScore& run = scoring_.at(o.job);
  std::erase(run.live, seq);
  if (!add_candidates(o.job, run, static_cast<int32_t>(run.job.first_new.size()))) {
    end_score(o.job, JobStatus::kRejected, "the scheduler refused the request");
  } else if (run.live.empty()) {
    end_score(o.job, JobStatus::kStop);
  }
}

void EngineImpl::end_score(int64_t job, JobStatus status, const std::string& message) {
  auto it = scoring_.find(job);
  if (it == scoring_.end()) return;
  ActiveScore& run = it->second;
  for (int64_t seq : run.live) {
    scheduler_->abort(seq);
    owners_.erase(seq);
  }
  release_images(run.images);
  ScoreOutcome o;
  o.status = status;
  o.message = message;
  o.prompt_tokens = static_cast<int32_t>(run.job.sequences[0].size());
  o.images = static_cast<int32_t>(run.job.images.size());
  o.computed_tokens = run.computed_tokens;
  o.steps = run.steps;
  for (size_t c = 0; status == JobStatus::kStop && c < run.token_logprobs.size(); ++c) {
    double sum = 0;
    for (double v : run.token_logprobs[c]) sum += v;
    if (std::isnan(sum)) {  // a row never came back: a bug, not the client's
      o.status = JobStatus::kFailed;
      o.message = "engine: candidate " + std::to_string(c) + " has tokens that were never scored";
      o.logprobs.clear();
      break;
    }
    o.logprobs.push_back(sum);
  }
  o.total_s = seconds_between(run.job.arrival, Clock::now());
  ScoreCallback done = std::move(run.done);
  scoring_.erase(it);
  try {
    done(std::move(o));
  } catch (const std::exception& e) {
    spdlog::error("score callback failed: {}", e.what());
  }
  job_ended();
}

}  // namespace flamingo
