// IDEFICS image preprocessing after decoding (IdeficsImageProcessor.preprocess, inference path):
// bicubic resize straight to image_size x image_size, rescale by 1/255, normalise with the
// per-channel mean/std, HWC -> CHW float32. Also reads preprocessor_config.json.
// Thread-safety: pure functions, no shared state.
#pragma once

#include <array>
#include <string>
#include <vector>

#include "model/image_decode.h"

namespace flamingo {

struct ImagePreprocessConfig {
  int image_size = 224;  // the model's input: image_size x image_size
  // CLIPImageProcessor: resize the shortest edge to this (the other edge keeps the aspect
  // ratio, truncated), then center-crop image_size x image_size. 0: resize to image_size
  // squared (IdeficsImageProcessor).
  int shortest_edge = 0;
  Alpha alpha = Alpha::kOverWhite;  // how decode_image must treat transparency
  std::array<float, 3> mean{0.48145466f, 0.4578275f, 0.40821073f};  // CLIP (OpenAI) constants
  std::array<float, 3> std{0.26862954f, 0.26130258f, 0.27577711f};
};

// Reads <model_dir>/preprocessor_config.json when it exists: "image_size", "image_mean" and
// "image_std" (each optional; a number or a list of 3 numbers for mean/std). A missing file or
// key falls back to config_image_size (the vision config's image_size) and the CLIP constants.
// A malformed file or value throws Error naming the file and the key.
ImagePreprocessConfig load_preprocess_config(const std::string& model_dir, int config_image_size);

// <model_dir>/preprocessor_config.json of a CLIP checkpoint (CLIPImageProcessor): size
// {"shortest_edge": N} (or N), crop_size {"height": H, "width": W} (or N; must equal
// image_size), image_mean, image_std; resample must be 3 (bicubic), rescale_factor 1/255,
// do_resize/do_center_crop/do_normalize/do_rescale/do_convert_rgb true when present. A missing
// file gives CLIP's defaults for image_size. Throws Error naming the file, key and value.
ImagePreprocessConfig load_clip_preprocess_config(const std::string& model_dir, int image_size);

// transformers' center_crop of an HWC image to height x width (zero padding where the image is
// smaller), on uint8 pixels.
RgbImage center_crop(const RgbImage& image, int height, int width);

// [3, H, W] CHW float32: x = float32(float64(v) * (1/255)), then (x - mean[c]) / std[c] in
// float32, exactly as transformers' rescale + normalize compute it.
std::vector<float> normalize_image(const RgbImage& resized, const ImagePreprocessConfig& cfg);

// resize_bicubic to cfg.image_size x cfg.image_size (aspect ratio not kept), then
// normalize_image. Returns 3 * image_size * image_size floats.
std::vector<float> preprocess_image(const RgbImage& image, const ImagePreprocessConfig& cfg);

}  // namespace flamingo
