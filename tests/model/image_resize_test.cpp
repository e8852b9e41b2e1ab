// Tests for model/image_resize: resize_bicubic must equal Pillow 9.4's
// Image.resize(BICUBIC) exactly (uint8, tolerance 0) on random images over many size pairs
// (odd sizes, 1xN, extreme ratios, up/down/mixed), and reproduce the golden resized images.
#include "model/image_resize.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "model/error.h"
#include "tests/common/npy.h"
#include "tests/common/pillow_oracle.h"

namespace flamingo {
namespace {

using testing::load_npy;
using testing::NpyArray;
using testing::TempDir;

const std::string kGolden = FLAMINGO_GOLDEN_DIR;

RgbImage from_npy(const NpyArray& arr, int64_t index = -1) {
  // [H, W, 3] or, with index >= 0, element `index` of [N, H, W, 3].
  const std::size_t rank = arr.shape.size();
  RgbImage image;
  image.height = static_cast<int>(arr.shape[rank - 3]);
  image.width = static_cast<int>(arr.shape[rank - 2]);
  const std::size_t size = static_cast<std::size_t>(image.width) * image.height * 3;
  const std::size_t offset = index < 0 ? 0 : static_cast<std::size_t>(index) * size;
  image.data.assign(arr.bytes.begin() + offset, arr.bytes.begin() + offset + size);
  return image;
}

::testing::AssertionResult same_image(const RgbImage& got, const RgbImage& want) {
  if (got.width != want.width || got.height != want.height) {
    return ::testing::AssertionFailure() << "size " << got.width << "x" << got.height
                                         << ", expected " << want.width << "x" << want.height;
  }
  std::size_t mismatches = 0;
  std::size_t first = 0;
  int max_diff = 0;
  for (std::size_t i = 0; i < got.data.size(); ++i) {
    const int diff = std::abs(int(got.data[i]) - int(want.data[i]));
    if (diff != 0 && mismatches++ == 0) first = i;
    max_diff = std::max(max_diff, diff);
  }
  if (mismatches == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << mismatches << " of " << got.data.size() << " values differ (max abs diff " << max_diff
         << "), first at flat index " << first;
}

RgbImage random_image(int width, int height, std::mt19937& rng, bool smooth) {
  RgbImage image;
  image.width = width;
  image.height = height;
  image.data.resize(static_cast<std::size_t>(width) * height * 3);
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      for (int c = 0; c < 3; ++c) {
        // Smooth gradients plus noise, or pure noise (drives the clip8 clamping hardest).
        const int base = smooth ? (x * 7 + y * 3 + c * 50) % 256 : 0;
        const int noise =
            smooth ? static_cast<int>(rng() % 41) - 20 : static_cast<int>(rng() % 256);
        image.data[(static_cast<std::size_t>(y) * width + x) * 3 + c] =
            static_cast<uint8_t>(std::clamp(base + noise, 0, 255));
      }
    }
  }
  return image;
}

TEST(ImageResizeTest, MatchesPillowBicubicOverManySizePairs) {
  // {in_w, in_h, out_w, out_h}
  std::vector<std::array<int, 4>> pairs = {
      {70, 35, 42, 42},   {28, 28, 42, 42},     {25, 47, 42, 42},  {100, 80, 42, 42},
      {84, 63, 42, 42},   {1, 1, 42, 42},       {1, 30, 42, 42},   {30, 1, 42, 42},
      {1, 200, 1, 7},     {200, 1, 9, 1},       {1, 1, 1, 5},      {3, 500, 224, 224},
      {500, 3, 224, 224}, {640, 480, 224, 224}, {97, 61, 42, 42},  {13, 11, 5, 3},
      {5, 3, 13, 11},     {42, 42, 42, 17},     {42, 42, 17, 42},  {41, 43, 43, 41},
      {7, 7, 8, 8},       {8, 8, 7, 7},         {300, 17, 42, 42}, {2, 2, 1, 1},
      {1000, 2, 3, 250},  {33, 65, 33, 20},     {33, 65, 20, 65},  {15, 15, 225, 225},
      {224, 224, 42, 42}, {49, 51, 224, 224},
  };
  std::mt19937 rng(424242);
  while (pairs.size() < 46) {  // plus random pairs
    const auto dim = [&](int max) { return 1 + static_cast<int>(rng() % max); };
    pairs.push_back({dim(120), dim(120), dim(120), dim(120)});
  }

  TempDir dir("flamingo_resize");
  std::ofstream jobs(dir.file("jobs.txt"));
  std::vector<RgbImage> inputs;
  for (std::size_t i = 0; i < pairs.size(); ++i) {
    const auto& [in_w, in_h, out_w, out_h] = pairs[i];
    inputs.push_back(random_image(in_w, in_h, rng, i % 2 == 0));
    const std::string name = "job" + std::to_string(i);
    testing::save_npy(dir.file(name + ".npy"), "|u1", {in_h, in_w, 3}, inputs.back().data.data());
    jobs << name << " " << out_w << " " << out_h << "\n";
  }
  jobs.close();
  ASSERT_EQ(testing::run_pillow_oracle("resize", dir.path()), "");

  for (std::size_t i = 0; i < pairs.size(); ++i) {
    const auto& [in_w, in_h, out_w, out_h] = pairs[i];
    SCOPED_TRACE(std::to_string(in_w) + "x" + std::to_string(in_h) + " -> " +
                 std::to_string(out_w) + "x" + std::to_string(out_h));
    const RgbImage want = from_npy(load_npy(dir.file("job" + std::to_string(i) + ".out.npy")));
    EXPECT_TRUE(same_image(resize_bicubic(inputs[i], out_w, out_h), want));
  }
}

// Golden step 3: each case's images, decoded (golden images/<stem>.rgb_uint8.npy, so this test
// does not depend on the decoder), resized to 42x42 == cases/<case>/resized_rgb_uint8.npy.
TEST(ImageResizeTest, ReproducesGoldenResizedImages) {
  int checked = 0;
  for (const auto& entry : std::filesystem::directory_iterator(kGolden + "/cases")) {
    const std::filesystem::path resized_path = entry.path() / "resized_rgb_uint8.npy";
    if (!std::filesystem::exists(resized_path)) continue;
    std::ifstream prompt_file(entry.path() / "prompt.json");
    const nlohmann::json prompt = nlohmann::json::parse(prompt_file);
    std::vector<std::string> files;
    for (const auto& item : prompt["prompt"]) {
      if (item.contains("image")) files.push_back(item["image"].get<std::string>());
    }
    const NpyArray resized = load_npy(resized_path.string());
    ASSERT_EQ(resized.shape[0], static_cast<int64_t>(files.size())) << entry.path();
    for (std::size_t i = 0; i < files.size(); ++i) {
      SCOPED_TRACE(entry.path().filename().string() + " / " + files[i]);
      const std::string stem = std::filesystem::path(files[i]).stem().string();
      const RgbImage decoded = from_npy(load_npy(kGolden + "/images/" + stem + ".rgb_uint8.npy"));
      EXPECT_TRUE(same_image(resize_bicubic(decoded, 42, 42), from_npy(resized, i)));
      ++checked;
    }
  }
  EXPECT_EQ(checked, 11);  // 1 + 2 + 0 + 1 + 3 + 2 + 1 + 1 images over the 8 cases
}

TEST(ImageResizeTest, SameSizeIsACopy) {
  std::mt19937 rng(1);
  const RgbImage image = random_image(42, 42, rng, false);
  EXPECT_TRUE(same_image(resize_bicubic(image, 42, 42), image));
}

TEST(ImageResizeTest, RejectsInvalidArguments) {
  std::mt19937 rng(2);
  RgbImage image = random_image(5, 4, rng, false);
  EXPECT_THROW(resize_bicubic(image, 0, 3), Error);
  EXPECT_THROW(resize_bicubic(image, 3, -1), Error);
  image.data.pop_back();
  EXPECT_THROW(resize_bicubic(image, 3, 3), Error);
  EXPECT_THROW(resize_bicubic(RgbImage{}, 3, 3), Error);
}

}  // namespace
}  // namespace flamingo
