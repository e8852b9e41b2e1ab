// One engine step: the scheduler's plan, the images its jobs need, one flattened forward, then
// per chunk its scored rows (Score) or its sampled token, stop checks and text (Generate), and
// the scheduler's update with the jobs that ended.
#include <spdlog/spdlog.h>

#include <algorithm>

#include "model/error.h"
#include "server/engine/engine_impl.h"

namespace flamingo {

void EngineImpl::step() {
  StepPlan plan = scheduler_->schedule();
  const Clock::time_point t0 = Clock::now();
  const size_t encoded = acquire_plan_images(plan);
  const Clock::time_point t1 = Clock::now();
  if (plan.chunks.empty()) {
    scheduler_->update({});
    return;
  }
  std::vector<int32_t> image_slots;  // the forward's images, chunk by chunk
  std::vector<int32_t> image_base;
  for (const SeqChunk& c : plan.chunks) {
    image_base.push_back(static_cast<int32_t>(image_slots.size()));
    for (int32_t slot : held_slots(c.id)) image_slots.push_back(slot);
  }
  std::vector<StepResult> results;
  std::vector<std::pair<int64_t, JobDelta>> deltas;
  FlatBatch batch;
  Clock::time_point t2;
  try {
    batch = scheduler_->build_batch(plan, image_base);
    if (config_.before_forward) config_.before_forward(steps_ + 1);
    const std::span<const float> logits = model_->forward(batch, image_slots);
    ++steps_;
    t2 = Clock::now();
    const int64_t vocab = model_->vocab_size();
    if (logits.size() != batch.logit_rows.size() * static_cast<size_t>(vocab)) {
      throw Error("engine: the model returned " + std::to_string(logits.size()) + " logits for " +
                  std::to_string(batch.logit_rows.size()) + " rows of " + std::to_string(vocab));
    }
    const float* row = logits.data();
    for (const SeqChunk& c : plan.chunks) {
      if (owners_.at(c.id).part >= 0) {
        record_scores(c, row, vocab);
        row += (c.score_end - c.score_begin) * vocab;
      }
      if (c.wants_logits) {
        emit(c, std::span(row, vocab), results, deltas, t2);
        row += vocab;
      }
    }
  } catch (const std::exception& e) {
    // The step's sequences have unknown KV and sampler state: their jobs end (nothing they
    // wrote reaches the prefix cache, which update() fills); queued jobs and the engine go on.
    spdlog::error("engine step {} failed: {}", steps_ + 1, e.what());
    std::vector<int64_t> jobs;
    for (const SeqChunk& c : plan.chunks) jobs.push_back(owners_.at(c.id).job);
    std::sort(jobs.begin(), jobs.end());
    jobs.erase(std::unique(jobs.begin(), jobs.end()), jobs.end());
    for (int64_t job : jobs)
      end_job(job, JobStatus::kFailed, std::string("engine error: ") + e.what());
    scheduler_->update({});
    return;
  }
  const std::vector<FinishedSeq> finished = scheduler_->update(results);
  for (auto& [id, d] : deltas) {
    try {
      generating_.at(id).sink->on_delta(std::move(d));
    } catch (const std::exception& e) {
      spdlog::error("request sink failed: {}", e.what());
    }
  }
  retire(finished);
  if (spdlog::should_log(spdlog::level::debug)) {
    const auto ms = [](Clock::time_point a, Clock::time_point b) {
      return std::chrono::duration<double, std::milli>(b - a).count();
    };
    spdlog::debug(
        "step {}: {} tokens, {} sequences, {} images encoded ({:.2f} ms), forward "
        "{:.2f} ms, sampling+output {:.2f} ms",
        steps_, batch.num_tokens(), plan.chunks.size(), encoded, ms(t0, t1), ms(t1, t2),
        ms(t2, Clock::now()));
  }
}

// Media cache slots for every job the plan touches (first time only), the misses encoded in
// one batch; jobs whose images do not fit end with kRejected, jobs with an image that cannot
// be encoded with kFailed, and both leave the plan. Returns the number of images encoded.
size_t EngineImpl::acquire_plan_images(StepPlan& plan) {
  ImageMisses misses;
  std::vector<int64_t> rejected;  // jobs
  for (const SeqChunk& c : plan.chunks) {
    const SeqOwner o = owners_.at(c.id);
    if (std::find(rejected.begin(), rejected.end(), o.job) != rejected.end()) continue;
    bool ok = false;
    if (o.part >= 0) {
      ActiveScore& s = scoring_.at(o.job);
      ok = acquire_images(s.job.images, s.images, misses);
    } else {
      ActiveGenerate& a = generating_.at(o.job);
      if (a.cached_prompt_tokens < 0) a.cached_prompt_tokens = c.begin;
      ok = acquire_images(a.job.images, a.images, misses);
    }
    if (!ok) rejected.push_back(o.job);
  }
  const size_t encoded = misses.slots.size();
  const std::vector<std::pair<int32_t, std::string>> failed = encode_misses(misses);
  for (int64_t job : rejected) end_job(job, JobStatus::kRejected, image_cache_full());
  // A job holding an image that could not be encoded ends; the step goes on without it.
  for (const auto& [slot, why] : failed) {
    std::vector<int64_t> holders;
    for (const SeqChunk& c : plan.chunks) {
      if (!scheduler_->contains(c.id)) continue;
      const std::span<const int32_t> held = held_slots(c.id);
      if (std::find(held.begin(), held.end(), slot) != held.end()) {
        holders.push_back(owners_.at(c.id).job);
      }
    }
    for (int64_t job : holders) {
      end_job(job, JobStatus::kFailed, "an image of the request could not be encoded: " + why);
    }
  }
  std::erase_if(plan.chunks, [this](const SeqChunk& c) { return !scheduler_->contains(c.id); });
  return encoded;
}

// Samples a generation's next token from its logits row; the stop ids, the text released so
// far and stop strings decide whether it ends.
void EngineImpl::emit(const SeqChunk& c, std::span<const float> logits,
                      std::vector<StepResult>& results,
                      std::vector<std::pair<int64_t, JobDelta>>& deltas, Clock::time_point now) {
  ActiveGenerate& a = generating_.at(c.id);
  const int32_t token = a.sampler.next(logits, scheduler_->tokens(c.id), defaults_.banned_ids);
  a.generated.push_back(token);
  if (!a.has_first_token) {
    a.has_first_token = true;
    a.first_token = now;
  }
  JobDelta d;
  d.token_ids.push_back(token);
  d.logprobs.push_back(static_cast<float>(token_logprob(logits, token)));
  if (a.job.top_logprobs > 0) d.top_logprobs.push_back(top_logprobs(logits, a.job.top_logprobs));
  bool stop = false;
  if (!a.job.ignore_eos) {
    stop = std::find(defaults_.stop_ids.begin(), defaults_.stop_ids.end(), token) !=
           defaults_.stop_ids.end();
  }
  const Detokenizer::Delta text = a.detokenizer.add(token);
  const TextStream::Update u = a.text.update(text.keep, text.append);
  d.text = u.delta;
  stop |= u.stopped;
  results.push_back(StepResult{c.id, token, stop});
  deltas.emplace_back(c.id, std::move(d));
}

void EngineImpl::retire(const std::vector<FinishedSeq>& finished) {
  for (const FinishedSeq& f : finished) {
    if (owners_.at(f.id).part >= 0) {
      part_scored(f.id);  // a scoring sequence whose tokens are all computed
    } else {
      finish(f.id, f.status);
    }
  }
}

}  // namespace flamingo
