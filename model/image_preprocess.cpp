#include "model/image_preprocess.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <system_error>

#include "model/error.h"
#include "model/image_resize.h"

namespace flamingo {
namespace {

constexpr int kMaxImageSize = 8192;

std::array<float, 3> read_triple(const nlohmann::json& root, const char* key,
                                 const std::string& file, bool positive) {
  const nlohmann::json& value = root.at(key);
  std::array<float, 3> out{};
  if (value.is_number()) {
    out.fill(value.get<float>());
  } else if (value.is_array() && value.size() == 3 && value[0].is_number() &&
             value[1].is_number() && value[2].is_number()) {
    for (int i = 0; i < 3; ++i) out[i] = value[i].get<float>();
  } else {
    throw Error(file + ": key '" + key + "' must be a number or a list of 3 numbers, found " +
                value.dump());
  }
  for (float v : out) {
    if (!std::isfinite(v) || (positive && v <= 0.0f)) {
      throw Error(file + ": key '" + key + "' must hold finite" + (positive ? " positive" : "") +
                  " numbers, found " + value.dump());
    }
  }
  return out;
}

nlohmann::json read_json_object(const std::string& file) {
  std::ifstream in(file);
  if (!in) throw Error(file + ": cannot open for reading");
  nlohmann::json root;
  try {
    root = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw Error(file + ": invalid JSON: " + e.what());
  }
  if (!root.is_object()) throw Error(file + ": expected a JSON object at the top level");
  return root;
}

// A size key of CLIPImageProcessor: N, or {"shortest_edge": N} / {"height": H, "width": W}
// (`field` names which); the value must be an integer in 1..kMaxImageSize.
int read_size(const nlohmann::json& root, const char* key, const char* field,
              const std::string& file) {
  const nlohmann::json& v = root.at(key);
  const nlohmann::json* n = &v;
  std::string name = key;
  if (v.is_object()) {
    if (!v.contains(field)) {
      throw Error(file + ": key '" + name + "' must hold '" + field + "', found " + v.dump());
    }
    n = &v.at(field);
    name += std::string(".") + field;
  }
  if (!n->is_number_integer() || n->get<int64_t>() < 1 || n->get<int64_t>() > kMaxImageSize) {
    throw Error(file + ": key '" + name + "' must be an integer in 1.." +
                std::to_string(kMaxImageSize) + ", found " + n->dump());
  }
  return n->get<int>();
}

}  // namespace

ImagePreprocessConfig load_clip_preprocess_config(const std::string& model_dir, int image_size) {
  if (image_size <= 0 || image_size > kMaxImageSize) {
    throw Error("image preprocessing: image_size " + std::to_string(image_size) +
                " from the model config is out of range 1.." + std::to_string(kMaxImageSize));
  }
  ImagePreprocessConfig cfg;
  cfg.image_size = image_size;
  cfg.shortest_edge = image_size;
  cfg.alpha = Alpha::kDrop;
  const std::string file = (std::filesystem::path(model_dir) / "preprocessor_config.json").string();
  std::error_code ec;
  if (!std::filesystem::exists(file, ec)) return cfg;
  const nlohmann::json root = read_json_object(file);
  if (root.contains("size")) cfg.shortest_edge = read_size(root, "size", "shortest_edge", file);
  if (root.contains("crop_size")) {
    const int h = read_size(root, "crop_size", "height", file);
    const int w = root["crop_size"].is_object() ? read_size(root, "crop_size", "width", file) : h;
    if (h != image_size || w != image_size) {
      throw Error(file + ": key 'crop_size' is " + std::to_string(h) + "x" + std::to_string(w) +
                  " but the model's vision_config.image_size is " + std::to_string(image_size));
    }
  }
  if (root.contains("resample") && root["resample"] != 3) {
    throw Error(file + ": key 'resample' must be 3 (bicubic, the only one supported), found " +
                root["resample"].dump());
  }
  if (root.contains("rescale_factor") &&
      (!root["rescale_factor"].is_number() ||
       std::abs(root["rescale_factor"].get<double>() * 255.0 - 1.0) > 1e-12)) {
    throw Error(file + ": key 'rescale_factor' must be 1/255, found " +
                root["rescale_factor"].dump());
  }
  for (const char* flag :
       {"do_resize", "do_center_crop", "do_normalize", "do_rescale", "do_convert_rgb"}) {
    if (root.contains(flag) && root[flag] != true) {
      throw Error(file + ": key '" + flag + "' must be true (the only setting supported), found " +
                  root[flag].dump());
    }
  }
  if (root.contains("image_mean")) cfg.mean = read_triple(root, "image_mean", file, false);
  if (root.contains("image_std")) cfg.std = read_triple(root, "image_std", file, true);
  return cfg;
}

RgbImage center_crop(const RgbImage& image, int height, int width) {
  // transformers: top = (h - height) // 2 (floor division); where the image is smaller it is
  // first zero-padded, centred with ceil((height - h) / 2) rows on top, which puts the window
  // at padded row 0. Either way, output row y is image row top + y, zero outside the image.
  const auto floor_half = [](int v) { return v >= 0 ? v / 2 : -((-v + 1) / 2); };
  const int top = floor_half(image.height - height), left = floor_half(image.width - width);
  RgbImage out;
  out.height = height;
  out.width = width;
  out.data.assign(static_cast<size_t>(height) * width * 3, 0);
  for (int y = 0; y < height; ++y) {
    const int iy = top + y;
    if (iy < 0 || iy >= image.height) continue;
    for (int x = 0; x < width; ++x) {
      const int ix = left + x;
      if (ix < 0 || ix >= image.width) continue;
      const uint8_t* src = image.data.data() + (static_cast<size_t>(iy) * image.width + ix) * 3;
      std::copy(src, src + 3, out.data.data() + (static_cast<size_t>(y) * width + x) * 3);
    }
  }
  return out;
}

ImagePreprocessConfig load_preprocess_config(const std::string& model_dir, int config_image_size) {
  ImagePreprocessConfig cfg;
  cfg.image_size = config_image_size;
  const std::string file = (std::filesystem::path(model_dir) / "preprocessor_config.json").string();
  std::error_code ec;
  if (!std::filesystem::exists(file, ec)) {
    if (config_image_size <= 0 || config_image_size > kMaxImageSize) {
      throw Error("image preprocessing: image_size " + std::to_string(config_image_size) +
                  " from the model config is out of range 1.." + std::to_string(kMaxImageSize));
    }
    return cfg;
  }
  const nlohmann::json root = read_json_object(file);

  if (root.contains("image_size")) {
    const nlohmann::json& v = root["image_size"];
    if (!v.is_number_integer() || v.get<long long>() <= 0 || v.get<long long>() > kMaxImageSize) {
      throw Error(file + ": key 'image_size' must be an integer in 1.." +
                  std::to_string(kMaxImageSize) + ", found " + v.dump());
    }
    cfg.image_size = v.get<int>();
  } else if (config_image_size <= 0 || config_image_size > kMaxImageSize) {
    throw Error(file + ": key 'image_size' is missing and the model config's image_size " +
                std::to_string(config_image_size) + " is out of range 1.." +
                std::to_string(kMaxImageSize));
  }
  if (root.contains("image_num_channels")) {
    const nlohmann::json& v = root["image_num_channels"];
    if (!v.is_number_integer() || v.get<long long>() != 3) {
      throw Error(file + ": key 'image_num_channels' must be 3, found " + v.dump());
    }
  }
  if (root.contains("image_mean")) cfg.mean = read_triple(root, "image_mean", file, false);
  if (root.contains("image_std")) cfg.std = read_triple(root, "image_std", file, true);
  return cfg;
}

std::vector<float> normalize_image(const RgbImage& resized, const ImagePreprocessConfig& cfg) {
  const std::size_t plane = static_cast<std::size_t>(resized.width) * resized.height;
  if (resized.width <= 0 || resized.height <= 0 || resized.data.size() != plane * 3) {
    throw Error("normalize_image: invalid image " + std::to_string(resized.width) + "x" +
                std::to_string(resized.height) + " with " + std::to_string(resized.data.size()) +
                " bytes (expected width*height*3)");
  }
  // transformers: rescale = (image.astype(float64) * (1/255)).astype(float32), then
  // normalize = (image - mean) / std with float32 mean/std arrays.
  constexpr double kScale = 1.0 / 255.0;
  std::array<float, 256> rescaled{};
  for (int v = 0; v < 256; ++v) rescaled[v] = static_cast<float>(static_cast<double>(v) * kScale);
  std::vector<float> out(plane * 3);
  for (int c = 0; c < 3; ++c) {
    std::array<float, 256> lut{};
    for (int v = 0; v < 256; ++v) lut[v] = (rescaled[v] - cfg.mean[c]) / cfg.std[c];
    float* dst = out.data() + c * plane;
    const uint8_t* src = resized.data.data() + c;
    for (std::size_t i = 0; i < plane; ++i) dst[i] = lut[src[i * 3]];
  }
  return out;
}

std::vector<float> preprocess_image(const RgbImage& image, const ImagePreprocessConfig& cfg) {
  if (cfg.shortest_edge <= 0) {
    return normalize_image(resize_bicubic(image, cfg.image_size, cfg.image_size), cfg);
  }
  // get_resize_output_image_size(default_to_square=False): the short edge becomes
  // shortest_edge, the long one int(shortest_edge * long / short).
  const bool portrait = image.width <= image.height;
  const int shorter = portrait ? image.width : image.height;
  const int longer = portrait ? image.height : image.width;
  if (shorter <= 0) throw Error("preprocess_image: empty image");
  const int new_long = static_cast<int>(static_cast<double>(cfg.shortest_edge) * longer / shorter);
  const int w = portrait ? cfg.shortest_edge : new_long;
  const int h = portrait ? new_long : cfg.shortest_edge;
  return normalize_image(center_crop(resize_bicubic(image, w, h), cfg.image_size, cfg.image_size),
                         cfg);
}

}  // namespace flamingo
