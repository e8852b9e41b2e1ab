// The engine's implementation, shared by its units (include only from server/engine/engine*.cpp).
// Torch-free: the tensors are behind EngineModel (engine_model.h).
//   engine.cpp        construction, the inbox (submit, cancel, drain, stats), the loop, job ends
//   engine_media.cpp  images of scheduled jobs: media cache slots, one batched encode per step
//   engine_step.cpp   one step: plan -> images -> forward -> sample, score, emit -> update
//   engine_score.cpp  Score jobs as scoring sequences of the scheduler, and their results
//   cache_sizing.cpp  KV blocks and image cache budget from the flags and the model's sizes
//   engine_model_pipeline.cpp  the real EngineModel, and Engine::start(config)
// Everything below the inbox runs on the engine thread only.
#pragma once

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <thread>
#include <unordered_map>
#include <variant>
#include <vector>

#include "server/engine/block_manager.h"
#include "server/engine/detokenizer.h"
#include "server/engine/engine.h"
#include "server/engine/engine_model.h"
#include "server/engine/media_cache.h"
#include "server/engine/scheduler.h"
#include "server/engine/text_stream.h"

namespace flamingo {

double seconds_between(Clock::time_point a, Clock::time_point b);

// The media cache slots a job holds while any of its sequences runs.
struct ImageHold {
  std::vector<int32_t> slots;  // per image of the job, once acquired
  bool acquired = false;
};

// A generation the engine thread is working on (scheduler sequence id == job id).
struct ActiveGenerate {
  GenerateJob job;
  std::shared_ptr<JobSink> sink;
  Sampler sampler;
  Detokenizer detokenizer;
  TextStream text;
  ImageHold images;
  std::vector<int32_t> generated;
  Clock::time_point first_token{};
  bool has_first_token = false;
  int32_t cached_prompt_tokens = -1;  // -1: not scheduled yet

  ActiveGenerate(GenerateJob j, std::shared_ptr<JobSink> s, const Tokenizer& tokenizer,
                 int32_t anchor, std::vector<std::string> stops)
      : job(std::move(j)),
        sink(std::move(s)),
        sampler(job.sampling),
        detokenizer(tokenizer, anchor),
        text(std::move(stops)) {}
};

// A Score job: one scoring sequence per part (see engine_score.cpp).
struct ActiveScore {
  struct Part {
    int32_t sequence = 0;          // index into job.sequences
    int32_t score_from = 1;        // first scored token
    std::vector<double> logprobs;  // per scored token
  };
  ScoreJob job;
  ScoreCallback done;
  ImageHold images;
  bool has_prompt_part = false;  // parts[0] scores the prompt (job.prompt_logprobs)
  std::vector<Part> parts;       // [the prompt,] then one per candidate
  std::vector<int64_t> live;     // scheduler ids of unfinished parts
  int32_t next_part = 0;         // parts not yet given to the scheduler
  int64_t computed_tokens = 0;   // ScoreOutcome::computed_tokens
  int32_t steps = 0;             // ScoreOutcome::steps
  int64_t last_step = -1;
};

// Which job a scheduler sequence belongs to: generations use their job id; a Score job's
// parts get ids of their own (negative, so they never meet a job id).
struct SeqOwner {
  int64_t job = 0;
  int32_t part = -1;  // >= 0: index into ActiveScore::parts
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
  EngineImpl(const EngineConfig& config, std::unique_ptr<EngineModel> model);
  ~EngineImpl() override;

  const ModelDescription& description() const override { return desc_; }
  const Tokenizer& tokenizer() const override { return model_->tokenizer(); }
  const ImagePreprocessConfig& image_config() const override { return model_->image_config(); }
  const std::vector<int32_t>& stop_ids() const override { return defaults_.stop_ids; }
  const std::vector<std::string>& stop_strings() const override { return defaults_.stop; }
  const std::vector<int32_t>& banned_ids() const override { return defaults_.banned_ids; }
  const EngineConfig& config() const override { return config_; }

  AdmissionResult submit(GenerateJob job, std::shared_ptr<JobSink> sink) override;
  AdmissionResult submit_score(ScoreJob job, ScoreCallback done) override;
  void cancel(int64_t id) override;
  bool drain(double timeout_s) override;
  EngineStats stats() const override;

  void start_thread();
  void warm_up();

 private:
  // ---- inbox (any thread; mutex_) ----
  AdmissionResult admit_locked(int64_t tokens_needed, const std::string& request_id);
  AdmissionResult enqueue(int64_t tokens_needed, const std::string& request_id, Command command);
  void job_ended();  // in_flight_ - 1, waking drain() at 0

  // ---- loop and job ends (engine.cpp) ----
  void run();
  void handle(Command& command);
  void expire_deadlines();
  void finish(int64_t id, JobStatus status, const std::string& message = {});
  void end_all(JobStatus status, const std::string& message);
  void publish_stats();
  void release_free_memory();  // malloc_trim once the engine goes idle after work

  // ---- media (engine_media.cpp) ----
  struct ImageMisses {  // images no cache entry holds yet: encoded in one batch per step
    std::vector<int32_t> slots;
    std::vector<const ImageInput*> inputs;
  };
  bool acquire_images(const std::vector<ImageInput>& inputs, ImageHold& hold, ImageMisses& misses);
  // Encodes the misses in one batch; when that throws, one by one. Returns the slots whose
  // image could not be encoded, with why (their entries stay without tensors).
  std::vector<std::pair<int32_t, std::string>> encode_misses(ImageMisses& misses);
  // Ends a generation or a Score job (whichever `job` is) with `status`.
  void end_job(int64_t job, JobStatus status, const std::string& message);
  void release_images(ImageHold& hold);
  std::string image_cache_full() const;
  // The images a sequence's owner holds (empty when it has none).
  std::span<const int32_t> held_slots(int64_t seq) const;

  // ---- one step (engine_step.cpp) ----
  void step();
  size_t acquire_plan_images(StepPlan& plan);
  void emit(const SeqChunk& c, std::span<const float> logits, std::vector<StepResult>& results,
            std::vector<std::pair<int64_t, JobDelta>>& deltas, Clock::time_point now);
  void retire(const std::vector<FinishedSeq>& finished);

  // ---- Score (engine_score.cpp) ----
  void start_score(NewScore& s);
  bool add_parts(int64_t job, ActiveScore& run, int32_t count);  // false: refused
  // Takes the chunk's scored rows (score_end - score_begin of them) and counts its work.
  void record_scores(const SeqChunk& c, const float* logits, int64_t vocab);
  void part_scored(int64_t seq);
  void end_score(int64_t job, JobStatus status, const std::string& message = {});

  EngineConfig config_;
  std::unique_ptr<EngineModel> model_;
  FamilyDefaults defaults_;
  ModelDescription desc_;
  int64_t image_bytes_ = 0;
  int32_t detokenizer_anchor_ = -1;

  // Shared with submitting threads (mutex_).
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Command> inbox_;
  int64_t next_id_ = 1;
  int32_t in_flight_ = 0;  // accepted and not yet finished (inbox + queued + running)
  bool draining_ = false;
  bool worked_since_trim_ = false;  // engine thread
  bool stop_ = false;
  EngineStats stats_;
  std::condition_variable idle_;  // signalled when in_flight_ drops to 0
  std::thread thread_;

  // Engine thread only.
  std::unique_ptr<BlockManager> blocks_;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<MediaCache> media_;
  std::unordered_map<int64_t, ActiveGenerate> generating_;
  std::unordered_map<int64_t, ActiveScore> scoring_;
  std::unordered_map<int64_t, SeqOwner> owners_;  // every scheduler sequence's job
  int64_t next_score_seq_ = -1;
  int64_t steps_ = 0;
};

}  // namespace flamingo
