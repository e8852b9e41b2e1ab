// What the request fuzz targets validate against: the golden checkpoint's tokenizer, small
// limits (1 MiB and 1 Mpx per image, 4 images: fast iterations, the same code), 32-pixel
// preprocessing, a context of 256 and the golden model's 402 rows, the IDEFICS templates.
// Built once per process.
#pragma once

#include <memory>
#include <string>

#include "model/tokenizer.h"
#include "server/request_builder.h"

namespace fuzz {

struct RequestWorld {
  std::unique_ptr<flamingo::Tokenizer> tokenizer =
      flamingo::Tokenizer::load(std::string(FLAMINGO_GOLDEN_DIR) + "/model");
  flamingo::ServerLimits limits = [] {
    flamingo::ServerLimits l;
    l.max_image_bytes = 1 << 20;
    l.max_image_pixels = 1'000'000;
    l.max_images_per_request = 4;
    return l;
  }();
  flamingo::RequestBuilder builder{*tokenizer, flamingo::ImagePreprocessConfig{32}, limits, 256,
                                   402,        flamingo::PromptTemplates::idefics()};
};

inline const RequestWorld& request_world() {
  static const RequestWorld w;
  return w;
}

}  // namespace fuzz
