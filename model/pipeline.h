// Everything between a user's prompt and the model for one checkpoint folder: tokenizer,
// IDEFICS prompt layout, image preprocessing and FlamingoModel, plus the generation defaults
// of the family (stop on </s> and <end_of_utterance>, never emit image tokens). Generation
// and scoring themselves are the engine's (server/engine). Immutable after load; const
// methods are thread-safe except that the model's forward passes run on the calling thread.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "model/family_defaults.h"
#include "model/flamingo.h"
#include "model/image_decode.h"
#include "model/image_preprocess.h"
#include "model/prompt.h"
#include "model/tokenizer.h"

namespace flamingo {

struct PipelineOptions {
  ModelOptions model;
};

class Pipeline {
 public:
  // Loads tokenizer, model and preprocessing config. Throws Error for a bad folder, and when
  // the tokenizer has more sentencepiece pieces than the model has embedding rows (a tokenizer
  // of another checkpoint; the message names both sizes). Fewer pieces than rows (a padded
  // vocabulary) is fine: generation_defaults() bans the ids without a token.
  static std::unique_ptr<Pipeline> load(const std::string& dir, const PipelineOptions& options);

  const FlamingoModel& model() const { return *model_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  const ImagePreprocessConfig& image_config() const { return image_config_; }

  // Token ids and image indices of a prompt (no images encoded). Throws Error when the number
  // of image items and images differ or a token has no row in the model.
  TokenizedPrompt tokenize(const std::vector<PromptItem>& items, size_t num_images) const;

  FamilyDefaults generation_defaults() const;

 private:
  Pipeline() = default;
  void check_rows(const std::vector<int32_t>& ids) const;

  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<FlamingoModel> model_;
  ImagePreprocessConfig image_config_;
};

}  // namespace flamingo
