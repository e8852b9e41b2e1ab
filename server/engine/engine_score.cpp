// Score jobs as scheduled work. Each part of a job is a scoring sequence of the scheduler: the
// prompt scored from its second token (when prompt_logprobs is asked), and each candidate c:
// sequences[c + 1] (the prompt's tokens, then the candidate's) scored from first_new[c]. The
// scheduler computes them in token-budget chunks beside running decodes and inside the KV
// budget; the forward returns the logits rows of their scored positions; a candidate's
// logprob is the sum of log p(token) over its own tokens.
// With prefix caching, the first part runs alone and the others join when it is done: they
// find the prompt's full blocks in the prefix cache and compute only the rest (the prompt's
// last partial block and their own tokens), so a Score costs ~ prompt + sum of candidates, and
// a repeated prompt costs nothing. Without prefix caching every part computes the prompt.
#include <spdlog/spdlog.h>

#include <cmath>
#include <limits>

#include "server/engine/engine_impl.h"

namespace flamingo {

void EngineImpl::start_score(NewScore& s) {
  ActiveScore& run = scoring_[s.id];
  run.job = std::move(s.job);
  run.done = std::move(s.done);
  const ScoreJob& job = run.job;
  const auto add_part = [&](size_t sequence, int32_t from) {
    const size_t scored = job.sequences[sequence].size() - static_cast<size_t>(from);
    run.parts.push_back({static_cast<int32_t>(sequence), from,
                         std::vector<double>(scored, std::numeric_limits<double>::quiet_NaN())});
  };
  if (job.prompt_logprobs && job.sequences[0].size() >= 2) {
    run.has_prompt_part = true;
    add_part(0, 1);
  }
  for (size_t c = 0; c < job.first_new.size(); ++c) add_part(c + 1, job.first_new[c]);
  const auto all = static_cast<int32_t>(run.parts.size());
  if (all == 0) {
    end_score(s.id, JobStatus::kStop);  // a one-token prompt: nothing to compute
  } else if (!add_parts(s.id, run, config_.prefix_caching ? 1 : all)) {
    end_score(s.id, JobStatus::kRejected, "the scheduler refused the request");
  }
}

bool EngineImpl::add_parts(int64_t job, ActiveScore& run, int32_t count) {
  const auto parts = static_cast<int32_t>(run.parts.size());
  for (int32_t i = 0; i < count && run.next_part < parts; ++i) {
    const int32_t p = run.next_part++;
    const ActiveScore::Part& part = run.parts[p];
    SequenceRequest req;
    req.id = next_score_seq_--;
    req.prompt = run.job.sequences[part.sequence];
    req.image_of_token = run.job.image_of_token[part.sequence];
    for (const ImageInput& im : run.job.images) req.image_hashes.push_back(im.key);
    req.max_new_tokens = 0;
    req.score_from = part.score_from;
    owners_[req.id] = SeqOwner{job, p};
    run.live.push_back(req.id);
    // Admission checked the KV size; the queue bound leaves room for every part.
    if (scheduler_->add(std::move(req)) != Scheduler::AddResult::kQueued) return false;
  }
  return true;
}

void EngineImpl::record_scores(const SeqChunk& c, const float* logits, int64_t vocab) {
  const SeqOwner& o = owners_.at(c.id);
  ActiveScore& run = scoring_.at(o.job);
  ActiveScore::Part& part = run.parts[o.part];
  const std::vector<int32_t>& tokens = run.job.sequences[part.sequence];
  run.computed_tokens += c.end - c.begin;
  if (run.last_step != steps_) {
    run.last_step = steps_;
    ++run.steps;
  }
  // Row p predicts token p + 1. A preempted part recomputes rows: the same values again.
  for (int32_t p = c.score_begin; p < c.score_end; ++p, logits += vocab) {
    part.logprobs[p + 1 - part.score_from] = token_logprob(std::span(logits, vocab), tokens[p + 1]);
  }
}

void EngineImpl::part_scored(int64_t seq) {
  const SeqOwner o = owners_.at(seq);
  owners_.erase(seq);
  ActiveScore& run = scoring_.at(o.job);
  std::erase(run.live, seq);
  if (!add_parts(o.job, run, static_cast<int32_t>(run.parts.size()))) {
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
  if (status == JobStatus::kStop) {
    if (run.job.prompt_logprobs) {
      o.prompt_logprobs.push_back(std::numeric_limits<double>::quiet_NaN());
      if (run.has_prompt_part) {
        const std::vector<double>& lp = run.parts[0].logprobs;
        o.prompt_logprobs.insert(o.prompt_logprobs.end(), lp.begin(), lp.end());
      }
    }
    for (size_t p = run.has_prompt_part ? 1 : 0; p < run.parts.size(); ++p) {
      double sum = 0;
      for (double v : run.parts[p].logprobs) sum += v;
      o.logprobs.push_back(sum);
    }
    double all = 0;
    for (double v : o.logprobs) all += v;
    for (size_t i = 1; i < o.prompt_logprobs.size(); ++i) all += o.prompt_logprobs[i];
    if (std::isnan(all)) {  // a row never came back: a bug, not the client's
      o = ScoreOutcome{};
      o.status = JobStatus::kFailed;
      o.message = "engine: a Score token was never scored";
    }
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
