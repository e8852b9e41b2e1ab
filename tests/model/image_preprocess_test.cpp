// Tests for model/image_preprocess: preprocessor_config.json loading (values, fallbacks,
// errors), normalize_image bit-exact against the numpy formula transformers uses, and the whole
// pipeline (decode + resize + normalize) against the golden pixel_values (max abs diff <= 1e-6;
// in practice 0) and resized_rgb_uint8 (exact).
#include "model/image_preprocess.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "model/error.h"
#include "model/image_decode.h"
#include "model/image_resize.h"
#include "tests/common/npy.h"
#include "tests/common/pillow_oracle.h"

namespace flamingo {
namespace {

using testing::load_npy;
using testing::NpyArray;
using testing::TempDir;

const std::string kGolden = FLAMINGO_GOLDEN_DIR;
constexpr float kPixelTolerance = 1e-6f;

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
}

template <class Fn>
void expect_error(Fn&& fn, const std::vector<std::string>& parts) {
  try {
    fn();
    ADD_FAILURE() << "no Error thrown; expected one containing '" << parts.front() << "'";
  } catch (const Error& e) {
    const std::string message = e.what();
    for (const std::string& part : parts) {
      EXPECT_NE(message.find(part), std::string::npos)
          << "message '" << message << "' lacks '" << part << "'";
    }
  }
}

TEST(ImagePreprocessTest, LoadsGoldenPreprocessorConfig) {
  const ImagePreprocessConfig cfg = load_preprocess_config(kGolden + "/model", 999);
  EXPECT_EQ(cfg.image_size, 42);  // the file wins over the model config's value
  const float mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
  const float std[3] = {0.26862954f, 0.26130258f, 0.27577711f};
  for (int c = 0; c < 3; ++c) {
    EXPECT_EQ(cfg.mean[c], mean[c]);
    EXPECT_EQ(cfg.std[c], std[c]);
  }
}

TEST(ImagePreprocessTest, FallsBackWithoutFileOrKeys) {
  TempDir dir("flamingo_preprocess_cfg");
  ImagePreprocessConfig cfg = load_preprocess_config(dir.path().string(), 56);
  EXPECT_EQ(cfg.image_size, 56);
  EXPECT_EQ(cfg.mean[1], 0.4578275f);
  EXPECT_EQ(cfg.std[2], 0.27577711f);

  write_text(dir.file("preprocessor_config.json"),
             R"({"image_mean": 0.5, "image_std": [1, 2, 4]})");
  cfg = load_preprocess_config(dir.path().string(), 30);
  EXPECT_EQ(cfg.image_size, 30);
  EXPECT_EQ(cfg.mean[0], 0.5f);
  EXPECT_EQ(cfg.mean[2], 0.5f);
  EXPECT_EQ(cfg.std[2], 4.0f);
}

TEST(ImagePreprocessTest, MalformedConfigNamesFileAndKey) {
  TempDir dir("flamingo_preprocess_bad");
  const std::string file = dir.file("preprocessor_config.json");
  write_text(file, "{\"image_size\": 42,");
  expect_error([&] { load_preprocess_config(dir.path().string(), 42); }, {file, "invalid JSON"});
  write_text(file, R"({"image_size": "42"})");
  expect_error([&] { load_preprocess_config(dir.path().string(), 42); },
               {file, "'image_size'", "\"42\""});
  write_text(file, R"({"image_size": 0})");
  expect_error([&] { load_preprocess_config(dir.path().string(), 42); }, {file, "'image_size'"});
  write_text(file, R"({"image_mean": [0.1, 0.2]})");
  expect_error([&] { load_preprocess_config(dir.path().string(), 42); },
               {file, "'image_mean'", "[0.1,0.2]"});
  write_text(file, R"({"image_std": [0.1, 0.0, 0.3]})");
  expect_error([&] { load_preprocess_config(dir.path().string(), 42); }, {file, "'image_std'"});
  write_text(file, R"({"image_num_channels": 1})");
  expect_error([&] { load_preprocess_config(dir.path().string(), 42); },
               {file, "'image_num_channels'"});
  write_text(file, "[1, 2]");
  expect_error([&] { load_preprocess_config(dir.path().string(), 42); }, {file, "object"});
}

// normalize_image vs numpy's float64 rescale + float32 normalize, bit for bit, over all 256
// values in every channel and a non-default mean/std.
TEST(ImagePreprocessTest, NormalizeMatchesNumpyExactly) {
  RgbImage image;
  image.width = 37;
  image.height = 21;
  image.data.resize(37 * 21 * 3);
  std::mt19937 rng(99);
  for (std::size_t i = 0; i < image.data.size(); ++i) {
    image.data[i] = static_cast<uint8_t>(i < 768 ? i / 3 : rng());
  }
  ImagePreprocessConfig cfg;
  cfg.mean = {0.5f, 0.4578275f, 0.1f};
  cfg.std = {0.25f, 0.26130258f, 0.9f};

  TempDir dir("flamingo_normalize");
  testing::save_npy(dir.file("input.npy"), "|u1", {21, 37, 3}, image.data.data());
  char params[256];
  std::snprintf(params, sizeof(params), "%.9g %.9g %.9g %.9g %.9g %.9g", cfg.mean[0], cfg.mean[1],
                cfg.mean[2], cfg.std[0], cfg.std[1], cfg.std[2]);
  write_text(dir.file("params.txt"), params);
  ASSERT_EQ(testing::run_pillow_oracle("normalize", dir.path()), "");
  const NpyArray want = load_npy(dir.file("output.npy"));
  ASSERT_EQ(want.shape, (std::vector<int64_t>{3, 21, 37}));

  const std::vector<float> got = normalize_image(image, cfg);
  ASSERT_EQ(got.size(), static_cast<std::size_t>(want.numel()));
  int mismatches = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    mismatches += std::memcmp(&got[i], want.as<float>() + i, sizeof(float)) != 0;
  }
  EXPECT_EQ(mismatches, 0);
}

std::vector<std::string> case_images(const std::filesystem::path& case_dir) {
  std::ifstream in(case_dir / "prompt.json");
  const nlohmann::json prompt = nlohmann::json::parse(in);
  std::vector<std::string> files;
  for (const auto& item : prompt["prompt"]) {
    if (item.contains("image")) files.push_back(item["image"].get<std::string>());
  }
  return files;
}

float max_abs_diff(const std::vector<float>& got, const float* want) {
  float worst = 0.0f;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const float diff = std::fabs(got[i] - want[i]);
    worst = std::isnan(diff) ? INFINITY : std::max(worst, diff);
  }
  return worst;
}

// Full pipeline from the case folder's image files: read_image_file -> resize -> normalize.
TEST(ImagePreprocessTest, ReproducesGoldenPixelValues) {
  const ImagePreprocessConfig cfg = load_preprocess_config(kGolden + "/model", 42);
  const std::size_t slot = 3 * 42 * 42;
  int checked = 0;
  for (const auto& entry : std::filesystem::directory_iterator(kGolden + "/cases")) {
    const std::filesystem::path case_dir = entry.path();
    if (!std::filesystem::exists(case_dir / "prompt.json") ||
        !std::filesystem::exists(case_dir / "resized_rgb_uint8.npy")) {
      continue;  // the batch case is checked separately
    }
    const std::vector<std::string> files = case_images(case_dir);
    const NpyArray pixel_values = load_npy((case_dir / "pixel_values.npy").string());
    const NpyArray resized = load_npy((case_dir / "resized_rgb_uint8.npy").string());
    ASSERT_EQ(resized.shape[0], static_cast<int64_t>(files.size()));
    ASSERT_GE(pixel_values.shape[1], static_cast<int64_t>(files.size()));
    for (std::size_t i = 0; i < files.size(); ++i) {
      SCOPED_TRACE(case_dir.filename().string() + " / " + files[i]);
      const RgbImage image = read_image_file((case_dir / files[i]).string(), ImageLimits{});
      const RgbImage small = resize_bicubic(image, 42, 42);
      EXPECT_EQ(std::memcmp(small.data.data(), resized.bytes.data() + i * slot, slot), 0);
      const std::vector<float> values = preprocess_image(image, cfg);
      ASSERT_EQ(values.size(), slot);
      EXPECT_LE(max_abs_diff(values, pixel_values.as<float>() + i * slot), kPixelTolerance);
      ++checked;
    }
  }
  EXPECT_EQ(checked, 11);
}

TEST(ImagePreprocessTest, ReproducesGoldenBatchPixelValues) {
  const std::filesystem::path batch = kGolden + "/cases/batch_case1_case5";
  const ImagePreprocessConfig cfg = load_preprocess_config(kGolden + "/model", 42);
  const NpyArray pixel_values = load_npy((batch / "pixel_values.npy").string());
  ASSERT_EQ(pixel_values.shape, (std::vector<int64_t>{2, 3, 3, 42, 42}));
  std::ifstream in(batch / "prompt.json");
  const nlohmann::json prompt = nlohmann::json::parse(in);
  const std::size_t slot = 3 * 42 * 42;
  for (std::size_t row = 0; row < 2; ++row) {
    std::size_t index = 0;
    for (const auto& item : prompt["prompts"][row]) {
      if (!item.contains("image")) continue;
      const std::string file = item["image"].get<std::string>();
      SCOPED_TRACE("row " + std::to_string(row) + " / " + file);
      const RgbImage image = read_image_file(kGolden + "/images/" + file, ImageLimits{});
      EXPECT_LE(max_abs_diff(preprocess_image(image, cfg),
                             pixel_values.as<float>() + (row * 3 + index) * slot),
                kPixelTolerance);
      ++index;
    }
    EXPECT_EQ(index, row == 0 ? 1u : 3u);
  }
}

TEST(ImagePreprocessTest, NormalizeRejectsInconsistentImage) {
  RgbImage image;
  image.width = 2;
  image.height = 2;
  image.data.resize(11);
  EXPECT_THROW(normalize_image(image, ImagePreprocessConfig{}), Error);
}

}  // namespace
}  // namespace flamingo
