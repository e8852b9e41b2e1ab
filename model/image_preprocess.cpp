#include "model/image_preprocess.h"

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

}  // namespace

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
  std::ifstream in(file);
  if (!in) throw Error(file + ": cannot open for reading");
  nlohmann::json root;
  try {
    root = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw Error(file + ": invalid JSON: " + e.what());
  }
  if (!root.is_object()) throw Error(file + ": expected a JSON object at the top level");

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
  return normalize_image(resize_bicubic(image, cfg.image_size, cfg.image_size), cfg);
}

}  // namespace flamingo
