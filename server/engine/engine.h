// The engine: one thread that owns the model and runs continuous batching. Jobs are
// submitted from any thread (the gRPC handlers), join the running batch at the next step and
// leave when done; each step schedules a token budget (scheduler.h), encodes the images of
// newly scheduled jobs together (media_cache.h), runs one flattened forward and samples
// each generation's token with its own Sampler. Score jobs are scheduled the same way, as
// prefill-only sequences whose logits rows are summed (engine_score.cpp). Torch-free facade
// over model/ (the implementation includes ATen): server code includes only this header.
//
// Thread-safety: every public method is thread-safe. The inbox (submissions, cancellations)
// is the only state shared between threads; sinks and callbacks run on the engine thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "server/engine/job.h"
#include "server/limits.h"

namespace flamingo {

class Tokenizer;
class EngineModel;
struct ImagePreprocessConfig;

struct EngineConfig {
  std::string model_dir;
  std::string dtype = "auto";    // auto | float32 | bfloat16
  std::string weights = "auto";  // auto | float32 | bfloat16 | int8 (linear weights)
  // Where the text decoder runs: cpu | cuda (engine_model_cuda.h) | auto (cuda when the build
  // has the CUDA kernels and a GPU answers, else cpu).
  std::string device = "cpu";
  int64_t context_length = 0;     // 0: from the checkpoint
  int32_t threads = 0;            // CPU threads for the model; 0: one per core
  int32_t block_size = 16;        // tokens per KV block
  int64_t kv_cache_bytes = 0;     // 0: see cache_sizing.h (a context per running sequence)
  int64_t image_cache_bytes = 0;  // 0: see cache_sizing.h (4 images per running sequence)
  int32_t token_budget = 512;     // tokens per step (prefill chunking)
  int32_t image_budget = 8;       // images encoded per step at most (scheduler.h); 0: no limit
  bool prefix_caching = true;
  bool warm_up = true;  // start() runs one request with an image through the engine first
  ServerLimits limits;
  // Called while weights load: bytes done, bytes total.
  std::function<void(int64_t, int64_t)> progress;
  // Tests only: runs before each forward pass with the step's number (from 1). A throw fails
  // that step's jobs as any error in a step would (fault isolation tests).
  std::function<void(int64_t)> before_forward;
};

struct ModelDescription {
  std::string family = "idefics";
  std::string model_dir;
  int64_t hidden_size = 0, num_layers = 0, num_cross_layers = 0, vocab_size = 0;
  int64_t image_size = 0, latents_per_image = 0, context_length = 0;
  std::string dtype;
  std::string weights;         // linear weights: float32 | bfloat16 | int8
  std::string kernel_isa;      // avx512 | avx2 | scalar
  std::string device = "cpu";  // where the text decoder runs: cpu | cuda
  int64_t kv_blocks_total = 0, kv_block_size = 0;
  int64_t image_bytes = 0;  // encoded (cross-attention K/V) bytes per image
};

struct EngineStats {
  int32_t queued = 0;   // accepted, waiting for their first step (incl. preempted)
  int32_t running = 0;  // holding KV blocks
  int32_t kv_blocks_used = 0, kv_blocks_free = 0;
  int64_t image_cache_bytes = 0;
  int64_t image_cache_referenced_bytes = 0;  // held by running jobs (0 when idle)
  int64_t steps = 0;
};

enum class Admission {
  kAccepted,
  kOverloaded,    // queue full: RESOURCE_EXHAUSTED
  kTooLarge,      // needs more KV blocks than the whole cache: RESOURCE_EXHAUSTED
  kShuttingDown,  // draining: UNAVAILABLE
};

struct AdmissionResult {
  Admission code = Admission::kAccepted;
  std::string message;  // names the limit and the value when not accepted
  int64_t id = 0;       // engine id for cancel()
};

class Engine {
 public:
  // Loads the model, starts the engine thread and (config.warm_up) runs one request with an
  // image through every path (vision, perceiver, image K/V, prefill, decode) before returning.
  // Throws flamingo::Error on a bad model folder or configuration.
  static std::unique_ptr<Engine> start(const EngineConfig& config);
  // The same over a given model (engine_model.h; tests pass a fake). config.model_dir is only
  // reported; the model's own options are the model's.
  static std::unique_ptr<Engine> start(const EngineConfig& config,
                                       std::unique_ptr<EngineModel> model);
  virtual ~Engine() = default;  // stops the thread; unfinished jobs end with kShutdown

  virtual const ModelDescription& description() const = 0;
  virtual const Tokenizer& tokenizer() const = 0;
  virtual const ImagePreprocessConfig& image_config() const = 0;
  // The family's stop ids (eos, end-of-utterance) and never-sampled ids.
  virtual const std::vector<int32_t>& stop_ids() const = 0;
  virtual const std::vector<std::string>& stop_strings() const = 0;
  virtual const std::vector<int32_t>& banned_ids() const = 0;
  virtual const EngineConfig& config() const = 0;

  // Queues a job; on kAccepted the sink will get on_finish exactly once.
  virtual AdmissionResult submit(GenerateJob job, std::shared_ptr<JobSink> sink) = 0;
  // A Score job needs KV room for its longest sequence; `done` gets its outcome exactly once
  // on kAccepted. Throws flamingo::Error on a malformed job (no candidate and no
  // prompt_logprobs, an empty prompt, sizes that differ, first_new outside [1, candidate size)).
  virtual AdmissionResult submit_score(ScoreJob job, ScoreCallback done) = 0;
  // Ends a job (generate or score) within one step with kCancelled; unknown ids are ignored.
  virtual void cancel(int64_t id) = 0;

  // Stops admitting (submit -> kShuttingDown), lets accepted jobs finish until `timeout_s`
  // passes, then ends the rest with kShutdown. Returns true when everything finished.
  virtual bool drain(double timeout_s) = 0;

  virtual EngineStats stats() const = 0;
};

}  // namespace flamingo
