// Fuzz target: an untrusted encoded image as a request brings it. The server's order: probe the
// header (declared size, format), refuse past the caps, decode with the caps, then preprocess
// (resize to the model's size, normalize). Errors are flamingo::Error; anything else (a crash,
// a sanitizer report, another exception) is a finding.
#include <cstddef>
#include <cstdint>

#include "model/error.h"
#include "model/image_decode.h"
#include "model/image_preprocess.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  flamingo::ImageLimits limits;
  limits.max_pixels = 4'000'000;  // the caps first, as the server applies them
  try {
    const flamingo::ImageHeader h = flamingo::probe_image(data, size, "fuzz");
    if (static_cast<int64_t>(h.width) * h.height > limits.max_pixels) return 0;
    const flamingo::RgbImage image = flamingo::decode_image(data, size, limits, "fuzz");
    flamingo::ImagePreprocessConfig cfg;
    cfg.image_size = 32;  // small: the resize code is the same for every size
    const std::vector<float> pixels = flamingo::preprocess_image(image, cfg);
    if (pixels.size() != 3u * 32 * 32) __builtin_trap();
  } catch (const flamingo::Error&) {
  }
  return 0;
}
