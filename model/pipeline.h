// Everything between a user's prompt and the model for one checkpoint folder: tokenizer,
// IDEFICS prompt layout, image preprocessing and FlamingoModel, plus the generation and
// scoring defaults of the family (stop on </s> and <end_of_utterance>, never emit image
// tokens). Immutable after load; const methods are thread-safe except that the model's
// forward passes run on the calling thread.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "model/generation.h"
#include "model/image_decode.h"
#include "model/image_preprocess.h"
#include "model/prompt.h"
#include "model/tokenizer.h"

namespace flamingo {

struct PipelineOptions {
  ModelOptions model;
  ImageLimits image_limits;
};

struct ScoreResult {
  std::vector<int32_t> prompt_ids;
  std::vector<double> token_logprobs;      // entry 0 is NaN (no context)
  std::vector<double> candidate_logprobs;  // one per candidate
};

class Pipeline {
 public:
  static std::unique_ptr<Pipeline> load(const std::string& dir, const PipelineOptions& options);

  const FlamingoModel& model() const { return *model_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  const ImagePreprocessConfig& image_config() const { return image_config_; }
  const ImageLimits& image_limits() const { return image_limits_; }

  // Token ids and image indices of a prompt (no images encoded). Throws Error when the number
  // of image items and images differ or a token has no row in the model.
  TokenizedPrompt tokenize(const std::vector<PromptItem>& items, size_t num_images) const;
  // tokenize() + image encoding: pixels -> vision -> perceiver -> cross-attention K/V.
  PreparedPrompt prepare(const std::vector<PromptItem>& items,
                         const std::vector<RgbImage>& images) const;

  // Banned ids, stop ids and stop strings of the family; sampling/max_new_tokens left as given.
  GenerationOptions generation_defaults() const;

  GenerationResult generate(const PreparedPrompt& prompt, const GenerationOptions& options) const;

  // Log-probabilities of the prompt's tokens and, for each candidate, the summed logprob of
  // the tokens that encode(last text + candidate) has beyond encode(last text).
  ScoreResult score(const std::vector<PromptItem>& items, const std::vector<RgbImage>& images,
                    const std::vector<std::string>& candidates) const;

 private:
  Pipeline() = default;
  void check_rows(const std::vector<int32_t>& ids) const;

  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<FlamingoModel> model_;
  ImagePreprocessConfig image_config_;
  ImageLimits image_limits_;
};

}  // namespace flamingo
