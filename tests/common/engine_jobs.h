// Helpers for the engine tests (tests/server/engine/engine*_test.cpp) on the golden tiny checkpoint
// (tests/golden/idefics-tiny): its model and image paths, a request as text after golden images,
// the GenerateJob the server would build for it, the same request as pipeline inputs for the
// single-sequence generator, and a JobSink that collects a job's output. Header-only; needs
// flamingo_engine_runtime (torch) and gtest.
// Thread-safety: JobCollector may be fed from the engine thread while another thread waits.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <mutex>
#include <string>
#include <vector>

#include "model/image_decode.h"
#include "model/image_preprocess.h"
#include "model/prompt.h"
#include "model/sampler.h"
#include "server/engine/engine.h"
#include "server/engine/media_cache.h"

namespace flamingo::testing {

inline const std::string kGoldenModel = std::string(FLAMINGO_GOLDEN_DIR) + "/model";
inline const std::string kGoldenImages = std::string(FLAMINGO_GOLDEN_DIR) + "/images/";

inline std::vector<uint8_t> file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

// Collects one job's output (text, tokens and logprobs of every delta, then the outcome);
// wait() blocks until on_finish.
class JobCollector : public JobSink {
 public:
  void on_delta(JobDelta d) override {
    std::lock_guard lock(mu_);
    streamed_text += d.text;
    tokens.insert(tokens.end(), d.token_ids.begin(), d.token_ids.end());
    logprobs.insert(logprobs.end(), d.logprobs.begin(), d.logprobs.end());
    ++deltas;
  }
  void on_finish(JobDelta last, JobOutcome o) override {
    std::lock_guard lock(mu_);
    streamed_text += last.text;
    tokens.insert(tokens.end(), last.token_ids.begin(), last.token_ids.end());
    logprobs.insert(logprobs.end(), last.logprobs.begin(), last.logprobs.end());
    outcome = std::move(o);
    done = true;
    cv_.notify_all();
  }
  void wait() {
    std::unique_lock lock(mu_);
    ASSERT_TRUE(cv_.wait_for(lock, std::chrono::seconds(120), [this] { return done; }));
  }
  std::string streamed_text;
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
  int deltas = 0;  // on_delta calls
  JobOutcome outcome;
  bool done = false;

 private:
  std::mutex mu_;
  std::condition_variable cv_;
};

// A generation request: `text` after the golden images named in `images` (files in
// kGoldenImages), in that order.
struct EngineCase {
  std::string text;
  std::vector<std::string> images;
  int32_t max_new_tokens = 0;
  SamplingParams sampling;
};

// The job the server builds for `k`: each image decoded and preprocessed with the engine's
// image config (with its media key), the IDEFICS prompt, max_new_tokens and sampling.
inline GenerateJob golden_job(const Engine& engine, const EngineCase& k) {
  std::vector<PromptItem> items;
  GenerateJob job;
  for (const std::string& name : k.images) {
    items.push_back(PromptItem::make_image());
    const std::vector<uint8_t> bytes = file_bytes(kGoldenImages + name);
    const ImagePreprocessConfig& ic = engine.image_config();
    job.images.push_back(
        {media_key(bytes, ic.image_size, ic.mean, ic.std),
         preprocess_image(decode_image(bytes.data(), bytes.size(), ImageLimits{}, name), ic)});
  }
  items.push_back(PromptItem::make_text(k.text));
  TokenizedPrompt t = build_idefics_prompt(engine.tokenizer(), items);
  job.prompt = t.token_ids;
  job.image_of_token = t.image_of_token;
  job.max_new_tokens = k.max_new_tokens;
  job.sampling = k.sampling;
  return job;
}

// `k` as the reference generator's inputs (prepare(pipeline, items, images),
// reference_generation.h).
struct PipelineInput {
  std::vector<PromptItem> items;
  std::vector<RgbImage> images;
};

inline PipelineInput pipeline_input(const EngineCase& k) {
  PipelineInput in;
  for (const std::string& name : k.images) {
    in.items.push_back(PromptItem::make_image());
    in.images.push_back(read_image_file(kGoldenImages + name, ImageLimits{}));
  }
  in.items.push_back(PromptItem::make_text(k.text));
  return in;
}

}  // namespace flamingo::testing
