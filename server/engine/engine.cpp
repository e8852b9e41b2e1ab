// The engine thread: continuous batching over Scheduler + BlockManager + MediaCache and one
// FlamingoModel. See engine.h.
#include "server/engine/engine.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <limits>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <variant>

#include "model/error.h"
#include "model/kv_cache.h"
#include "model/pipeline.h"
#include "server/engine/block_manager.h"
#include "server/engine/media_cache.h"
#include "server/engine/scheduler.h"
#include "server/engine/text_stream.h"

namespace flamingo {
namespace {

double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

std::string mib(int64_t bytes) { return std::to_string((bytes + (1 << 19)) >> 20) + " MiB"; }

// A generation the engine thread is working on.
struct Active {
  GenerateJob job;
  std::shared_ptr<JobSink> sink;
  Sampler sampler;
  TextStream text;
  std::vector<int32_t> image_slots;  // media cache slot per image, once acquired
  bool images_acquired = false;
  std::vector<int32_t> generated;
  Clock::time_point first_token{};
  bool has_first_token = false;
  int32_t cached_prompt_tokens = -1;  // -1: not admitted yet

  Active(GenerateJob j, std::shared_ptr<JobSink> s, std::vector<std::string> stops)
      : job(std::move(j)), sink(std::move(s)), sampler(job.sampling), text(std::move(stops)) {}
};

struct PendingScore {
  int64_t id = 0;
  ScoreJob job;
  ScoreCallback done;
};

struct NewGenerate {
  int64_t id;
  GenerateJob job;
  std::shared_ptr<JobSink> sink;
};
struct NewScore {
  int64_t id;
  ScoreJob job;
  ScoreCallback done;
};
struct CancelJob {
  int64_t id;
};
using Command = std::variant<NewGenerate, NewScore, CancelJob>;

class EngineImpl final : public Engine {
 public:
  explicit EngineImpl(const EngineConfig& config);
  ~EngineImpl() override;

  const ModelDescription& description() const override { return desc_; }
  const Tokenizer& tokenizer() const override { return pipeline_->tokenizer(); }
  const ImagePreprocessConfig& image_config() const override { return pipeline_->image_config(); }
  const std::vector<int32_t>& stop_ids() const override { return defaults_.stop_ids; }
  const std::vector<std::string>& stop_strings() const override { return defaults_.stop; }
  const std::vector<int32_t>& banned_ids() const override { return defaults_.banned_ids; }
  const EngineConfig& config() const override { return config_; }

  AdmissionResult submit(GenerateJob job, std::shared_ptr<JobSink> sink) override;
  AdmissionResult submit_score(ScoreJob job, ScoreCallback done) override;
  void cancel(int64_t id) override;
  bool drain(double timeout_s) override;
  EngineStats stats() const override;

  void start_thread() {
    thread_ = std::thread([this] { run(); });
  }
  void warm_up();

 private:
  // ---- engine thread ----
  void run();
  void handle(Command& command);
  void expire_deadlines();
  void step();
  // Images of one request that the media cache does not hold yet, to encode in one batch.
  struct ImageMisses {
    std::vector<int32_t> slots;
    std::vector<const ImageInput*> inputs;
  };
  bool acquire_images(Active& a, ImageMisses& misses);
  void encode_misses(ImageMisses& misses);
  void encode_missing(const std::vector<int32_t>& slots, const std::vector<const ImageInput*>& in);
  void release_images(Active& a);
  void finish(int64_t id, JobStatus status, const std::string& message = {});
  void run_score(PendingScore& score);
  void end_all(JobStatus status, const std::string& message);
  void publish_stats();

  AdmissionResult admit_locked(int64_t tokens_needed, const std::string& request_id);

  EngineConfig config_;
  std::unique_ptr<Pipeline> pipeline_;
  GenerationOptions defaults_;
  ModelDescription desc_;
  int64_t image_bytes_ = 0;

  // Shared with submitting threads (mutex_).
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Command> inbox_;
  int64_t next_id_ = 1;
  int32_t in_flight_ = 0;  // accepted and not yet finished (inbox + queued + running)
  bool draining_ = false;
  bool stop_ = false;
  EngineStats stats_;
  std::condition_variable idle_;  // signalled when in_flight_ drops to 0
  std::thread thread_;

  // Engine thread only.
  std::unique_ptr<KvCache> cache_;
  std::unique_ptr<BlockManager> blocks_;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<MediaCache> media_;
  std::vector<std::optional<ImageKV>> image_store_;  // by media slot
  std::unordered_map<int64_t, Active> active_;
  std::deque<PendingScore> scores_;
  int64_t steps_ = 0;
};

EngineImpl::EngineImpl(const EngineConfig& config) : config_(config) {
  FlamingoModel::set_threads(config.threads);
  PipelineOptions po;
  po.model.dtype = config.dtype;
  po.model.weights = config.weights;
  po.model.context_length = config.context_length;
  po.model.progress = config.progress;
  po.image_limits.max_bytes = config.limits.max_image_bytes;
  po.image_limits.max_pixels = config.limits.max_image_pixels;
  pipeline_ = Pipeline::load(config.model_dir, po);
  defaults_ = pipeline_->generation_defaults();
  const FlamingoModel& model = pipeline_->model();
  const ModelConfig& mc = model.config();

  const SchedulerConfig sc{config.limits.max_running_requests,
                           config.limits.max_queued_requests + config.limits.max_running_requests,
                           config.token_budget};
  if (config.block_size < 1)
    throw Error("--block-size must be >= 1, got " + std::to_string(config.block_size));
  const int64_t block_bytes = KvCache::bytes_per_block(mc, config.block_size, model.dtype());
  int64_t blocks = 0;
  if (config.kv_cache_bytes > 0) {
    blocks = config.kv_cache_bytes / block_bytes;
  } else {  // full context for every running sequence, at most 4 GiB, at least one context
    const int64_t per_seq = ceil_div(model.context_length(), config.block_size);
    blocks = std::min<int64_t>(per_seq * sc.max_running, (4ll << 30) / block_bytes);
    blocks = std::max(blocks, per_seq);
  }
  if (blocks < 1) {
    throw Error("--kv-cache-mb: " + mib(config.kv_cache_bytes) + " holds no KV block of " +
                std::to_string(block_bytes) + " bytes");
  }
  image_bytes_ = 2 * mc.num_cross_layers() * mc.image_tokens() * mc.hidden_size *
                 static_cast<int64_t>(c10::elementSize(model.dtype()));
  int64_t image_budget = config.image_cache_bytes;
  if (image_budget <= 0) {
    image_budget = std::max<int64_t>(64ll << 20, 4ll * sc.max_running * image_bytes_);
  }
  if (image_budget < image_bytes_) {
    throw Error("--image-cache-mb: " + mib(image_budget) + " holds no encoded image of " +
                std::to_string(image_bytes_) + " bytes");
  }
  cache_ = std::make_unique<KvCache>(mc, blocks, config.block_size, model.dtype());
  blocks_ = std::make_unique<BlockManager>(static_cast<int32_t>(blocks), config.block_size,
                                           config.prefix_caching);
  scheduler_ = std::make_unique<Scheduler>(sc, *blocks_);
  media_ = std::make_unique<MediaCache>(image_budget);

  desc_.model_dir = config.model_dir;
  desc_.family = mc.model_type;
  desc_.hidden_size = mc.hidden_size;
  desc_.num_layers = mc.num_hidden_layers;
  desc_.num_cross_layers = mc.num_cross_layers();
  desc_.vocab_size = mc.total_vocab();
  desc_.image_size = pipeline_->image_config().image_size;
  desc_.latents_per_image = mc.image_tokens();
  desc_.context_length = model.context_length();
  desc_.dtype = model.dtype() == at::kBFloat16 ? "bfloat16" : "float32";
  desc_.weights = kernels::weight_type_name(model.weight_type());
  desc_.kernel_isa = kernels::isa_name(kernels::active_isa());
  desc_.kv_blocks_total = blocks;
  desc_.kv_block_size = config.block_size;
  desc_.image_bytes = image_bytes_;
  stats_.kv_blocks_free = static_cast<int32_t>(blocks);
  spdlog::info("engine: {} KV blocks x {} tokens ({}), image cache {} ({} bytes per image)", blocks,
               config.block_size, mib(blocks * block_bytes), mib(image_budget), image_bytes_);
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

void EngineImpl::warm_up() {
  // One image and a few tokens through every path: vision, perceiver, K/V, prefill, decode.
  const int s = pipeline_->image_config().image_size;
  RgbImage image;
  image.width = s;
  image.height = s;
  image.data.assign(static_cast<size_t>(s) * s * 3, 128);
  PreparedPrompt p =
      pipeline_->prepare({PromptItem::make_image(), PromptItem::make_text("warm-up")}, {image});
  GenerationOptions o = defaults_;
  o.max_new_tokens = 2;
  o.ignore_eos = true;
  o.block_size = config_.block_size;
  pipeline_->generate(p, o);
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

AdmissionResult EngineImpl::submit(GenerateJob job, std::shared_ptr<JobSink> sink) {
  if (job.prompt.empty() || job.prompt.size() != job.image_of_token.size() ||
      job.max_new_tokens < 1) {
    throw Error("engine: malformed job (empty prompt, image_of_token size or max_new_tokens)");
  }
  AdmissionResult r;
  {
    std::lock_guard lock(mutex_);
    r = admit_locked(static_cast<int64_t>(job.prompt.size()) + job.max_new_tokens - 1,
                     job.request_id);
    if (r.code != Admission::kAccepted) return r;
    inbox_.push_back(NewGenerate{r.id, std::move(job), std::move(sink)});
  }
  wake_.notify_all();
  return r;
}

AdmissionResult EngineImpl::submit_score(ScoreJob job, ScoreCallback done) {
  AdmissionResult r;
  {
    std::lock_guard lock(mutex_);
    r = admit_locked(0, job.request_id);
    if (r.code != Admission::kAccepted) return r;
    inbox_.push_back(NewScore{r.id, std::move(job), std::move(done)});
  }
  wake_.notify_all();
  return r;
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
      if (inbox_.empty() && active_.empty() && scores_.empty() && !stop_) {
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
      if (!scores_.empty()) {
        PendingScore s = std::move(scores_.front());
        scores_.pop_front();
        run_score(s);
      }
      if (scheduler_->has_work()) step();
    } catch (const std::exception& e) {
      // A failed step leaves the batch's state unknown: end every job rather than hang.
      spdlog::error("engine step failed: {}", e.what());
      end_all(JobStatus::kFailed, std::string("engine error: ") + e.what());
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
    active_.try_emplace(g->id, std::move(g->job), std::move(g->sink), std::move(stops));
    const Scheduler::AddResult added = scheduler_->add(std::move(req));
    if (added != Scheduler::AddResult::kQueued) {  // admission already checked both limits
      finish(g->id, JobStatus::kRejected, "the scheduler refused the request");
    }
  } else if (auto* s = std::get_if<NewScore>(&command)) {
    scores_.push_back(PendingScore{s->id, std::move(s->job), std::move(s->done)});
  } else if (auto* c = std::get_if<CancelJob>(&command)) {
    if (active_.count(c->id)) {
      finish(c->id, JobStatus::kCancelled);
    } else {
      for (auto it = scores_.begin(); it != scores_.end(); ++it) {
        if (it->id != c->id) continue;
        ScoreOutcome o;
        o.status = JobStatus::kCancelled;
        o.total_s = seconds_between(it->job.arrival, Clock::now());
        ScoreCallback done = std::move(it->done);
        scores_.erase(it);
        done(std::move(o));
        std::lock_guard lock(mutex_);
        if (--in_flight_ == 0) idle_.notify_all();
        break;
      }
    }
  }
}

void EngineImpl::expire_deadlines() {
  const Clock::time_point now = Clock::now();
  std::vector<int64_t> expired;
  for (const auto& [id, a] : active_) {
    if (a.job.deadline <= now) expired.push_back(id);
  }
  for (int64_t id : expired) finish(id, JobStatus::kDeadline);
  for (auto it = scores_.begin(); it != scores_.end();) {
    if (it->job.deadline > now) {
      ++it;
      continue;
    }
    ScoreOutcome o;
    o.status = JobStatus::kDeadline;
    ScoreCallback done = std::move(it->done);
    it = scores_.erase(it);
    done(std::move(o));
    std::lock_guard lock(mutex_);
    if (--in_flight_ == 0) idle_.notify_all();
  }
}

void EngineImpl::finish(int64_t id, JobStatus status, const std::string& message) {
  auto it = active_.find(id);
  if (it == active_.end()) return;
  Active& a = it->second;
  scheduler_->abort(id);  // no-op when the scheduler already retired it
  release_images(a);
  const Clock::time_point now = Clock::now();
  JobDelta last;
  last.text = a.text.finish();
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
  active_.erase(it);
  try {
    sink->on_finish(std::move(last), std::move(o));
  } catch (const std::exception& e) {
    spdlog::error("request sink failed: {}", e.what());
  }
  std::lock_guard lock(mutex_);
  if (--in_flight_ == 0) idle_.notify_all();
}

void EngineImpl::end_all(JobStatus status, const std::string& message) {
  std::vector<int64_t> ids;
  for (const auto& [id, a] : active_) ids.push_back(id);
  std::sort(ids.begin(), ids.end());
  for (int64_t id : ids) finish(id, status, message);
  while (!scores_.empty()) {
    PendingScore s = std::move(scores_.front());
    scores_.pop_front();
    ScoreOutcome o;
    o.status = status;
    o.message = message;
    s.done(std::move(o));
    std::lock_guard lock(mutex_);
    if (--in_flight_ == 0) idle_.notify_all();
  }
}

bool EngineImpl::acquire_images(Active& a, ImageMisses& misses) {
  if (a.images_acquired) return true;
  for (const ImageInput& im : a.job.images) {
    const std::optional<MediaCache::Lookup> l = media_->acquire(im.key, image_bytes_);
    if (!l) {
      for (int32_t s : a.image_slots) media_->release(s);
      a.image_slots.clear();
      return false;
    }
    a.image_slots.push_back(l->slot);
    if (image_store_.size() <= static_cast<size_t>(l->slot)) image_store_.resize(l->slot + 1);
    // A slot without tensors needs encoding: a miss, or an entry whose encoding failed before.
    if (!image_store_[l->slot].has_value() &&
        std::find(misses.slots.begin(), misses.slots.end(), l->slot) == misses.slots.end()) {
      misses.slots.push_back(l->slot);
      misses.inputs.push_back(&im);
    }
  }
  a.images_acquired = true;
  return true;
}

void EngineImpl::encode_misses(ImageMisses& misses) {
  for (int32_t evicted : media_->take_evicted()) image_store_[evicted].reset();
  if (!misses.slots.empty()) encode_missing(misses.slots, misses.inputs);
  misses = {};
}

void EngineImpl::encode_missing(const std::vector<int32_t>& slots,
                                const std::vector<const ImageInput*>& in) {
  const int64_t s = desc_.image_size;
  at::Tensor pixels = at::empty({static_cast<int64_t>(in.size()), 3, s, s}, at::kFloat);
  for (size_t i = 0; i < in.size(); ++i) {
    if (static_cast<int64_t>(in[i]->pixels.size()) != 3 * s * s) {
      throw Error("engine: image has " + std::to_string(in[i]->pixels.size()) +
                  " values, expected 3 x " + std::to_string(s) + " x " + std::to_string(s));
    }
    std::memcpy(pixels[static_cast<int64_t>(i)].data_ptr<float>(), in[i]->pixels.data(),
                in[i]->pixels.size() * sizeof(float));
  }
  std::vector<ImageKV> kv = pipeline_->model().encode_images(pixels);
  for (size_t i = 0; i < slots.size(); ++i) image_store_[slots[i]] = std::move(kv[i]);
}

void EngineImpl::release_images(Active& a) {
  for (int32_t s : a.image_slots) media_->release(s);
  a.image_slots.clear();
  a.images_acquired = false;
}

void EngineImpl::step() {
  StepPlan plan = scheduler_->schedule();
  // Images of newly admitted requests: every image no cache entry holds yet is encoded in
  // ONE batch before the forward; an image several requests share is encoded once.
  const Clock::time_point t0 = Clock::now();
  std::vector<int64_t> rejected;
  ImageMisses misses;
  for (const SeqChunk& c : plan.chunks) {
    Active& a = active_.at(c.id);
    if (a.cached_prompt_tokens < 0) a.cached_prompt_tokens = c.begin;
    if (!acquire_images(a, misses)) rejected.push_back(c.id);
  }
  const size_t encoded = misses.slots.size();
  encode_misses(misses);
  const Clock::time_point t1 = Clock::now();
  for (int64_t id : rejected) {
    finish(id, JobStatus::kRejected,
           "the image cache is full (--image-cache-mb " + mib(media_->budget_bytes()) +
               ", referenced by running requests)");
    std::erase_if(plan.chunks, [id](const SeqChunk& c) { return c.id == id; });
  }
  if (plan.chunks.empty()) {
    scheduler_->update({});
    return;
  }
  std::vector<const ImageKV*> images;
  std::vector<int32_t> image_base;
  for (const SeqChunk& c : plan.chunks) {
    Active& a = active_.at(c.id);
    image_base.push_back(static_cast<int32_t>(images.size()));
    for (int32_t slot : a.image_slots) images.push_back(&*image_store_[slot]);
  }
  const FlatBatch batch = scheduler_->build_batch(plan, image_base);
  at::Tensor logits = pipeline_->model().forward(batch, *cache_, images).contiguous();
  ++steps_;
  const Clock::time_point t2 = Clock::now();
  const int64_t vocab = logits.size(1);
  const Clock::time_point now = Clock::now();

  std::vector<StepResult> results;
  std::vector<std::pair<int64_t, JobDelta>> deltas;
  int64_t row = 0;
  for (const SeqChunk& c : plan.chunks) {
    if (!c.wants_logits) continue;
    Active& a = active_.at(c.id);
    std::span<const float> logit_row(logits.data_ptr<float>() + row * vocab, vocab);
    ++row;
    const int32_t token = a.sampler.next(logit_row, scheduler_->tokens(c.id), defaults_.banned_ids);
    a.generated.push_back(token);
    if (!a.has_first_token) {
      a.has_first_token = true;
      a.first_token = now;
    }
    JobDelta d;
    d.token_ids.push_back(token);
    d.logprobs.push_back(static_cast<float>(token_logprob(logit_row, token)));
    if (a.job.top_logprobs > 0)
      d.top_logprobs.push_back(top_logprobs(logit_row, a.job.top_logprobs));
    bool stop = false;
    if (!a.job.ignore_eos) {
      stop = std::find(defaults_.stop_ids.begin(), defaults_.stop_ids.end(), token) !=
             defaults_.stop_ids.end();
    }
    const TextStream::Update u =
        a.text.update(pipeline_->tokenizer().decode(a.generated, /*skip_special_tokens=*/true));
    d.text = u.delta;
    stop |= u.stopped;
    results.push_back(StepResult{c.id, token, stop});
    deltas.emplace_back(c.id, std::move(d));
  }
  const std::vector<FinishedSeq> finished = scheduler_->update(results);
  for (auto& [id, d] : deltas) {
    Active& a = active_.at(id);
    try {
      a.sink->on_delta(std::move(d));
    } catch (const std::exception& e) {
      spdlog::error("request sink failed: {}", e.what());
    }
  }
  for (const FinishedSeq& f : finished) {
    finish(f.id, f.reason == FinishReason::kStop ? JobStatus::kStop : JobStatus::kLength);
  }
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

void EngineImpl::run_score(PendingScore& score) {
  ScoreOutcome o;
  o.prompt_tokens =
      static_cast<int32_t>(score.job.sequences.empty() ? 0 : score.job.sequences[0].size());
  o.images = static_cast<int32_t>(score.job.images.size());
  // Score jobs reuse the media cache for their images, then run one flattened forward over
  // the prompt and every candidate with a KV cache of their own.
  Active holder(GenerateJob{}, nullptr, {});
  holder.job.images = std::move(score.job.images);
  try {
    ImageMisses misses;
    const bool acquired = acquire_images(holder, misses);
    encode_misses(misses);
    if (!acquired) {
      o.status = JobStatus::kRejected;
      o.message = "the image cache is full (--image-cache-mb " + mib(media_->budget_bytes()) + ")";
    } else {
      std::vector<ImageKV> images;
      for (int32_t slot : holder.image_slots) images.push_back(*image_store_[slot]);
      release_images(holder);
      const std::vector<std::vector<double>> lp =
          batch_prompt_logprobs(pipeline_->model(), score.job.sequences, score.job.image_of_token,
                                images, config_.block_size);
      for (size_t c = 0; c + 1 < score.job.sequences.size(); ++c) {
        double sum = 0;
        for (size_t i = score.job.first_new[c]; i < score.job.sequences[c + 1].size(); ++i) {
          sum += lp[c + 1][i];
        }
        o.logprobs.push_back(sum);
      }
      o.status = JobStatus::kStop;
    }
  } catch (const std::exception& e) {
    release_images(holder);  // entries left without tensors are re-encoded when next used
    o.status = JobStatus::kFailed;
    o.message = e.what();
  }
  o.total_s = seconds_between(score.job.arrival, Clock::now());
  score.done(std::move(o));
  std::lock_guard lock(mutex_);
  if (--in_flight_ == 0) idle_.notify_all();
}

void EngineImpl::publish_stats() {
  std::lock_guard lock(mutex_);
  stats_.queued = scheduler_->num_waiting() + static_cast<int32_t>(inbox_.size()) +
                  static_cast<int32_t>(scores_.size());
  stats_.running = scheduler_->num_running();
  stats_.kv_blocks_free = blocks_->num_free_blocks();
  stats_.kv_blocks_used = blocks_->num_used_blocks();
  stats_.image_cache_bytes = media_->used_bytes();
  stats_.steps = steps_;
}

}  // namespace

std::unique_ptr<Engine> Engine::start(const EngineConfig& config) {
  auto engine = std::make_unique<EngineImpl>(config);
  engine->warm_up();
  engine->start_thread();
  return engine;
}

}  // namespace flamingo
