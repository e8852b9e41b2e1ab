// Validation and job building for CLIP's Embed and Classify (front-end neutral: the gRPC
// service fills these inputs from its protos). Every limit names its flag; errors are
// InvalidRequest naming the field (images[i], texts[i], labels, template ...). A text longer
// than the model's context is cut to it (end token kept) and listed in EmbedJob::truncated.
// Torch-free; immutable after construction, so build_* may run concurrently.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "model/clip_tokenizer.h"
#include "model/image_preprocess.h"
#include "server/clip/clip_engine.h"
#include "server/limits.h"
#include "server/request_builder.h"

namespace flamingo {

struct EmbedInput {
  std::vector<ImageRef> images;  // fields "images[i]"
  std::vector<std::string_view> texts;
};

struct ClassifyInput {
  ImageRef image;  // field "image"
  std::vector<std::string_view> labels;
  std::string_view text_template;  // empty: "a photo of a {}."
};

class ClipRequestBuilder {
 public:
  static constexpr std::string_view kDefaultTemplate = "a photo of a {}.";

  ClipRequestBuilder(const ClipTokenizer& tokenizer, ImagePreprocessConfig image_config,
                     ServerLimits limits, int64_t context_length);

  EmbedJob build_embed(const EmbedInput& request) const;
  // One image and one text per label (the template with "{}" replaced by the label).
  EmbedJob build_classify(const ClassifyInput& request) const;
  const ServerLimits& limits() const { return limits_; }

 private:
  // Appends the token ids of text `index` (cut to the context) to the job.
  void add_text(std::string_view text, size_t index, EmbedJob& job) const;

  const ClipTokenizer& tokenizer_;
  ImagePreprocessConfig image_config_;
  ServerLimits limits_;
  int64_t context_length_;
};

}  // namespace flamingo
