// What the gRPC front end hands the engine and what the engine hands back: tokenized,
// validated requests with preprocessed images, and the per-token deltas / final outcome of
// each. Plain data, torch-free. Jobs are moved into the engine; sinks are called on the
// engine thread only (a sink that touches other threads' state brings its own lock).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "model/sampler.h"
#include "server/engine/job_status.h"

namespace flamingo {

using Clock = std::chrono::steady_clock;

// One decoded and preprocessed image of a request.
struct ImageInput {
  uint64_t key = 0;           // media_key() of the encoded bytes + preprocessing config
  std::vector<float> pixels;  // [3, S, S] CHW float32 (preprocess_image)
};

struct GenerateJob {
  std::string request_id;
  std::vector<int32_t> prompt;          // [P] token ids, P >= 1
  std::vector<int32_t> image_of_token;  // [P] index into images, -1 = none
  std::vector<ImageInput> images;
  int32_t max_new_tokens = 64;    // >= 1, resolved default
  SamplingParams sampling;        // validated; seed resolved (never 0 once submitted)
  std::vector<std::string> stop;  // extra stop strings (the family's are added by the engine)
  bool ignore_eos = false;
  int32_t top_logprobs = 0;
  Clock::time_point deadline = Clock::time_point::max();
  Clock::time_point arrival = Clock::now();
};

// Newly generated tokens of a job. text is valid UTF-8: characters still incomplete, and a
// tail that could be the start of a stop string, are held back until resolved.
struct JobDelta {
  std::string text;
  std::vector<int32_t> token_ids;
  std::vector<float> logprobs;
  std::vector<std::vector<std::pair<int32_t, double>>> top_logprobs;  // when asked
};

struct JobOutcome {
  JobStatus status = JobStatus::kLength;
  std::string message;             // for kRejected / kFailed
  std::string text;                // the whole generated text (stop string cut off)
  std::vector<int32_t> token_ids;  // every generated token
  int32_t prompt_tokens = 0;
  int32_t completion_tokens = 0;
  int32_t images = 0;
  int32_t cached_prompt_tokens = 0;  // prompt tokens found in the prefix cache
  uint64_t seed = 0;
  double time_to_first_token_s = 0;  // arrival -> first token (0 if none)
  double total_s = 0;                // arrival -> finish
};

// Receives one job's output on the engine thread: on_delta per step that produced tokens
// (possibly with text still held back), then on_finish exactly once, whose delta carries the
// held-back text released at the end (and any last tokens).
class JobSink {
 public:
  virtual ~JobSink() = default;
  virtual void on_delta(JobDelta delta) = 0;
  virtual void on_finish(JobDelta last, JobOutcome outcome) = 0;
};

// Log-likelihood scoring: sequences[0] is the prompt, sequences[1 + c] the prompt extended by
// candidate c, whose own tokens start at first_new[c]. All share `images`. With
// prompt_logprobs, every prompt token's logprob comes back too.
struct ScoreJob {
  std::string request_id;
  std::vector<std::vector<int32_t>> sequences;
  std::vector<std::vector<int32_t>> image_of_token;  // per sequence, per token
  std::vector<int32_t> first_new;                    // per candidate, >= 1
  bool prompt_logprobs = false;
  std::vector<ImageInput> images;
  Clock::time_point deadline = Clock::time_point::max();
  Clock::time_point arrival = Clock::now();
};

struct ScoreOutcome {
  JobStatus status = JobStatus::kStop;  // kStop: done; else as for JobOutcome
  std::string message;
  std::vector<double> logprobs;  // per candidate
  // With ScoreJob::prompt_logprobs: log p(prompt[i] | prompt[<i]) per prompt token; entry 0
  // is NaN (no context).
  std::vector<double> prompt_logprobs;
  int32_t prompt_tokens = 0;
  int32_t images = 0;
  int64_t computed_tokens = 0;  // tokens the forward passes computed for it (all candidates)
  int32_t steps = 0;            // engine steps it took part in
  double total_s = 0;
};
using ScoreCallback = std::function<void(ScoreOutcome)>;

}  // namespace flamingo
