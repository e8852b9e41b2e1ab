// The engine: construction, the inbox shared with submitting threads, the loop and the ends of
// jobs. See engine.h for the contract and engine_impl.h for how the units divide the work.
#include <malloc.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>

#include "model/error.h"
#include "server/engine/cache_sizing.h"
#include "server/engine/collecting_sink.h"
#include "server/engine/engine_impl.h"

namespace flamingo {

double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

EngineImpl::EngineImpl(const EngineConfig& config, std::unique_ptr<EngineModel> model)
    : config_(config), model_(std::move(model)), defaults_(model_->defaults()) {
  if (!defaults_.rows_without_tokens.empty()) {
    std::string ranges;
    int64_t count = 0;
    for (const auto& [first, last] : defaults_.rows_without_tokens) {
      ranges += (ranges.empty() ? "" : ", ") +
                (first == last ? std::to_string(first)
                               : std::to_string(first) + ".." + std::to_string(last));
      count += last - first + 1;
    }
    spdlog::warn(
        "{}: {} embedding row(s) have no token in the tokenizer (ids {}): they are never "
        "sampled (a padded vocabulary)",
        config.model_dir, count, ranges);
  }
  detokenizer_anchor_ = detokenizer_anchor(model_->tokenizer());

  const ServerLimits& l = config.limits;
  // Admission bounds the jobs in flight; a Score job may queue a sequence per candidate and
  // one for its prompt.
  const int32_t jobs = l.max_queued_requests + l.max_running_requests;
  const SchedulerConfig sc{l.max_running_requests, jobs * (std::max(0, l.max_candidates) + 1),
                           config.token_budget, config.image_budget};
  image_bytes_ = model_->image_kv_bytes();
  const int64_t block_bytes = model_->kv_block_bytes(std::max(config.block_size, 1));
  const CacheSizes sizes =
      size_caches({config.kv_cache_bytes, config.image_cache_bytes, config.block_size,
                   sc.max_running, model_->context_length(), block_bytes, image_bytes_});
  model_->allocate_kv(sizes.kv_blocks, config.block_size);
  blocks_ = std::make_unique<BlockManager>(static_cast<int32_t>(sizes.kv_blocks), config.block_size,
                                           config.prefix_caching);
  media_ = std::make_unique<MediaCache>(sizes.image_cache_bytes);
  scheduler_ = std::make_unique<Scheduler>(sc, *blocks_, media_.get(), image_bytes_);

  desc_ = model_->describe();
  desc_.model_dir = config.model_dir;
  desc_.kv_blocks_total = sizes.kv_blocks;
  desc_.kv_block_size = config.block_size;
  desc_.image_bytes = image_bytes_;
  stats_.kv_blocks_free = static_cast<int32_t>(sizes.kv_blocks);
  spdlog::info("engine: {} KV blocks x {} tokens ({}), image cache {} ({} bytes per image)",
               sizes.kv_blocks, config.block_size, mib(sizes.kv_blocks * block_bytes),
               mib(sizes.image_cache_bytes), image_bytes_);
}

EngineImpl::~EngineImpl() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
    draining_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void EngineImpl::start_thread() {
  thread_ = std::thread([this] { run(); });
}

void EngineImpl::warm_up() {
  // One image and a few tokens through the engine itself: vision, perceiver, image K/V,
  // prefill and decode, so the first client does not pay for first-touch costs.
  const int s = model_->image_config().image_size;
  RgbImage image;
  image.width = s;
  image.height = s;
  image.data.assign(static_cast<size_t>(s) * s * 3, 128);
  const TokenizedPrompt t =
      model_->tokenize({PromptItem::make_image(), PromptItem::make_text("warm-up")}, 1);
  GenerateJob job;
  job.request_id = "warm-up";
  job.prompt = t.token_ids;
  job.image_of_token = t.image_of_token;
  job.images.push_back({0x77617276u /* not a content hash: no client image has it */,
                        preprocess_image(image, model_->image_config())});
  job.max_new_tokens = 2;
  job.ignore_eos = true;
  job.sampling.seed = 1;
  auto done = std::make_shared<CollectingSink>();
  const AdmissionResult r = submit(std::move(job), done);
  if (r.code != Admission::kAccepted) throw Error("engine warm-up: " + r.message);
  const JobOutcome& o = done->wait();
  if (o.status != JobStatus::kLength) throw Error("engine warm-up failed: " + o.message);
}

// ---- submitting threads ----

AdmissionResult EngineImpl::admit_locked(int64_t tokens_needed, const std::string& request_id) {
  AdmissionResult r;
  const std::string who = request_id.empty() ? "request" : "request " + request_id;
  if (draining_) {
    r.code = Admission::kShuttingDown;
    r.message = "server is shutting down";
    return r;
  }
  const int64_t slots = desc_.kv_blocks_total * desc_.kv_block_size;
  if (tokens_needed > slots) {
    r.code = Admission::kTooLarge;
    r.message = who + " needs " + std::to_string(tokens_needed) + " KV slots, more than the " +
                std::to_string(slots) + " of the whole KV cache (--kv-cache-mb)";
    return r;
  }
  const int32_t limit = config_.limits.max_queued_requests + config_.limits.max_running_requests;
  if (in_flight_ >= limit) {
    r.code = Admission::kOverloaded;
    r.message =
        "server overloaded: " + std::to_string(in_flight_) + " requests in flight, the limit is " +
        std::to_string(config_.limits.max_running_requests) + " running (--max-running) + " +
        std::to_string(config_.limits.max_queued_requests) + " queued (--max-queued)";
    return r;
  }
  r.id = next_id_++;
  ++in_flight_;
  return r;
}

AdmissionResult EngineImpl::enqueue(int64_t tokens_needed, const std::string& request_id,
                                    Command command) {
  AdmissionResult r;
  {
    std::lock_guard lock(mutex_);
    r = admit_locked(tokens_needed, request_id);
    if (r.code != Admission::kAccepted) return r;
    std::visit([&](auto& c) { c.id = r.id; }, command);
    inbox_.push_back(std::move(command));
  }
  wake_.notify_all();
  return r;
}

void EngineImpl::job_ended() {
  std::lock_guard lock(mutex_);
  if (--in_flight_ == 0) idle_.notify_all();
}

AdmissionResult EngineImpl::submit(GenerateJob job, std::shared_ptr<JobSink> sink) {
  if (job.prompt.empty() || job.prompt.size() != job.image_of_token.size() ||
      job.max_new_tokens < 1) {
    throw Error("engine: malformed job (empty prompt, image_of_token size or max_new_tokens)");
  }
  // The last generated token is never fed back, so it needs no KV slot.
  const int64_t needed = static_cast<int64_t>(job.prompt.size()) + job.max_new_tokens - 1;
  const std::string request_id = job.request_id;
  return enqueue(needed, request_id, NewGenerate{0, std::move(job), std::move(sink)});
}

AdmissionResult EngineImpl::submit_score(ScoreJob job, ScoreCallback done) {
  const size_t n = job.sequences.size();
  bool ok = n >= 1 && (n >= 2 || job.prompt_logprobs) && !job.sequences[0].empty() &&
            job.image_of_token.size() == n && job.first_new.size() == n - 1 &&
            job.image_of_token[0].size() == job.sequences[0].size();
  // Each part runs as one sequence: the longest must fit.
  int64_t needed = ok ? static_cast<int64_t>(job.sequences[0].size()) : 0;
  for (size_t c = 0; ok && c + 1 < n; ++c) {
    const std::vector<int32_t>& seq = job.sequences[c + 1];
    ok = job.image_of_token[c + 1].size() == seq.size() && job.first_new[c] >= 1 &&
         job.first_new[c] < static_cast<int64_t>(seq.size());
    needed = std::max<int64_t>(needed, static_cast<int64_t>(seq.size()));
  }
  if (!ok) {
    throw Error("engine: malformed score job (sequences, image_of_token or first_new)");
  }
  const std::string request_id = job.request_id;
  return enqueue(needed, request_id, NewScore{0, std::move(job), std::move(done)});
}

void EngineImpl::cancel(int64_t id) {
  {
    std::lock_guard lock(mutex_);
    inbox_.push_back(CancelJob{id});
  }
  wake_.notify_all();
}

bool EngineImpl::drain(double timeout_s) {
  std::unique_lock lock(mutex_);
  draining_ = true;
  const auto until = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                        std::chrono::duration<double>(timeout_s));
  const bool done = idle_.wait_until(lock, until, [this] { return in_flight_ == 0; });
  stop_ = true;
  lock.unlock();
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  return done;
}

EngineStats EngineImpl::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

// ---- engine thread ----

void EngineImpl::run() {
  for (;;) {
    std::deque<Command> commands;
    bool stop = false;
    {
      std::unique_lock lock(mutex_);
      if (inbox_.empty() && !scheduler_->has_work() && !stop_) {
        wake_.wait(lock, [this] { return !inbox_.empty() || stop_; });
      }
      commands.swap(inbox_);
      stop = stop_;
    }
    try {
      for (Command& c : commands) handle(c);
      if (stop) {
        end_all(JobStatus::kShutdown, "the server stopped before the request finished");
        publish_stats();
        return;
      }
      expire_deadlines();
      if (scheduler_->has_work()) {
        step();
        worked_since_trim_ = true;
      }
      if (worked_since_trim_ && !scheduler_->has_work()) release_free_memory();
    } catch (const std::exception& e) {
      // A failed step leaves the batch's state unknown: end every job rather than hang, then
      // close the step's plan (its sequences are gone) so that the next jobs run.
      spdlog::error("engine step failed: {}", e.what());
      end_all(JobStatus::kFailed, std::string("engine error: ") + e.what());
      scheduler_->update({});
    }
    publish_stats();
  }
}

void EngineImpl::handle(Command& command) {
  if (auto* g = std::get_if<NewGenerate>(&command)) {
    std::vector<std::string> stops = g->job.stop;
    stops.insert(stops.end(), defaults_.stop.begin(), defaults_.stop.end());
    SequenceRequest req;
    req.id = g->id;
    req.prompt = g->job.prompt;
    req.image_of_token = g->job.image_of_token;
    for (const ImageInput& im : g->job.images) req.image_hashes.push_back(im.key);
    req.max_new_tokens = g->job.max_new_tokens;
    generating_.try_emplace(g->id, std::move(g->job), std::move(g->sink), tokenizer(),
                            detokenizer_anchor_, std::move(stops));
    owners_[g->id] = SeqOwner{g->id, -1};
    if (scheduler_->add(std::move(req)) != Scheduler::AddResult::kQueued) {
      // Admission already checked both limits.
      finish(g->id, JobStatus::kRejected, "the scheduler refused the request");
    }
  } else if (auto* s = std::get_if<NewScore>(&command)) {
    start_score(*s);
  } else if (auto* c = std::get_if<CancelJob>(&command)) {
    if (generating_.count(c->id)) finish(c->id, JobStatus::kCancelled);
    if (scoring_.count(c->id)) end_score(c->id, JobStatus::kCancelled);
  }
}

void EngineImpl::expire_deadlines() {
  const Clock::time_point now = Clock::now();
  std::vector<int64_t> expired;
  for (const auto& [id, a] : generating_) {
    if (a.job.deadline <= now) expired.push_back(id);
  }
  for (int64_t id : expired) finish(id, JobStatus::kDeadline);
  expired.clear();
  for (const auto& [id, s] : scoring_) {
    if (s.job.deadline <= now) expired.push_back(id);
  }
  for (int64_t id : expired) end_score(id, JobStatus::kDeadline);
}

void EngineImpl::finish(int64_t id, JobStatus status, const std::string& message) {
  auto it = generating_.find(id);
  if (it == generating_.end()) return;
  ActiveGenerate& a = it->second;
  scheduler_->abort(id);  // no-op when the scheduler already retired it
  owners_.erase(id);
  release_images(a.images);
  const Clock::time_point now = Clock::now();
  JobDelta last;
  const Detokenizer::Delta rest = a.detokenizer.finish();  // exactly the decode of every token
  last.text = a.text.update(rest.keep, rest.append).delta;
  last.text += a.text.finish();
  JobOutcome o;
  o.status = status;
  o.message = message;
  o.text = a.text.text();
  o.token_ids = a.generated;
  o.prompt_tokens = static_cast<int32_t>(a.job.prompt.size());
  o.completion_tokens = static_cast<int32_t>(a.generated.size());
  o.images = static_cast<int32_t>(a.job.images.size());
  o.cached_prompt_tokens = std::max(a.cached_prompt_tokens, 0);
  o.seed = a.job.sampling.seed;
  o.time_to_first_token_s = a.has_first_token ? seconds_between(a.job.arrival, a.first_token) : 0;
  o.total_s = seconds_between(a.job.arrival, now);
  std::shared_ptr<JobSink> sink = std::move(a.sink);
  generating_.erase(it);
  try {
    sink->on_finish(std::move(last), std::move(o));
  } catch (const std::exception& e) {
    spdlog::error("request sink failed: {}", e.what());
  }
  job_ended();
}

void EngineImpl::end_job(int64_t job, JobStatus status, const std::string& message) {
  if (scoring_.count(job)) {
    end_score(job, status, message);
  } else {
    finish(job, status, message);
  }
}

void EngineImpl::end_all(JobStatus status, const std::string& message) {
  std::vector<int64_t> ids;
  for (const auto& [id, a] : generating_) ids.push_back(id);
  for (const auto& [id, s] : scoring_) ids.push_back(id);
  std::sort(ids.begin(), ids.end());
  for (int64_t id : ids) {
    finish(id, status, message);
    if (scoring_.count(id)) end_score(id, status, message);
  }
}

// Going idle after work: the heap pages that requests freed (gRPC's buffers of a 10 MB prompt,
// decoded images, activations) go back to the system; glibc otherwise keeps whatever is not
// at the top of each arena, and the server's RSS stays at its high-water mark after a burst.
// Before the stats are published, so that a client that sees every KV block free sees the
// trimmed process.
void EngineImpl::release_free_memory() {
  {
    std::lock_guard lock(mutex_);
    if (!inbox_.empty()) return;  // more work: trim when it is done
  }
  const auto start = std::chrono::steady_clock::now();
  malloc_trim(0);
  worked_since_trim_ = false;
  spdlog::debug(
      "idle: malloc_trim took {:.2f} ms",
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
}

void EngineImpl::publish_stats() {
  // A job counts as running while any of its sequences holds KV blocks.
  std::vector<int64_t> running;
  for (int64_t seq : scheduler_->running_ids()) running.push_back(owners_.at(seq).job);
  std::sort(running.begin(), running.end());
  running.erase(std::unique(running.begin(), running.end()), running.end());
  const auto jobs = static_cast<int32_t>(generating_.size() + scoring_.size());
  std::lock_guard lock(mutex_);
  stats_.running = static_cast<int32_t>(running.size());
  stats_.queued = jobs - stats_.running + static_cast<int32_t>(inbox_.size());
  stats_.kv_blocks_free = blocks_->num_free_blocks();
  stats_.kv_blocks_used = blocks_->num_used_blocks();
  stats_.image_cache_bytes = media_->used_bytes();
  stats_.image_cache_referenced_bytes = media_->used_bytes() - media_->evictable_bytes();
  stats_.steps = steps_;
}

std::unique_ptr<Engine> Engine::start(const EngineConfig& config,
                                      std::unique_ptr<EngineModel> model) {
  auto engine = std::make_unique<EngineImpl>(config, std::move(model));
  engine->start_thread();
  if (config.warm_up) engine->warm_up();
  return engine;
}

}  // namespace flamingo
