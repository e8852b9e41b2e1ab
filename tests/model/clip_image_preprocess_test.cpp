// CLIP's image preprocessing (model/image_preprocess: load_clip_preprocess_config, the
// shortest-edge resize, center_crop, alpha dropped as Pillow's convert("RGB") does) against the
// pixel values transformers' CLIPImageProcessor computed for the golden tiny CLIP's 8 images
// (tests/golden/clip-tiny: RGB, grayscale, RGBA, a tall noise image, a JPEG): max abs diff
// <= 1e-6 (the golden README's tolerance). Plus center_crop's padding and the config errors.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "model/error.h"
#include "model/image_decode.h"
#include "model/image_preprocess.h"
#include "tests/common/npy.h"

namespace flamingo {
namespace {

const std::string kGolden = std::string(FLAMINGO_SOURCE_DIR) + "/tests/golden/clip-tiny";

TEST(ClipImagePreprocess, MatchesTransformersOnTheGoldenImages) {
  const ImagePreprocessConfig cfg = load_clip_preprocess_config(kGolden + "/model", 40);
  EXPECT_EQ(cfg.shortest_edge, 40);
  EXPECT_EQ(cfg.alpha, Alpha::kDrop);
  std::ifstream in(kGolden + "/cases.json");
  const nlohmann::json cases = nlohmann::json::parse(in);
  ASSERT_EQ(cases["images"].size(), 8u);
  for (const auto& im : cases["images"]) {
    const std::string file = im["file"].get<std::string>();
    const RgbImage rgb = read_image_file(kGolden + "/images/" + file, ImageLimits{}, cfg.alpha);
    const std::vector<float> got = preprocess_image(rgb, cfg);
    const testing::NpyArray want = testing::load_npy(
        kGolden + "/images/" + file.substr(0, file.rfind('.')) + ".pixel_values.npy");
    ASSERT_EQ(static_cast<int64_t>(got.size()), want.numel()) << file;
    double diff = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      diff = std::max(diff, static_cast<double>(std::abs(got[i] - want.as<float>()[i])));
    }
    EXPECT_LE(diff, 1e-6) << file;
  }
}

TEST(ClipImagePreprocess, AlphaIsDroppedNotComposited) {
  const std::string rgba = kGolden + "/images/rgba.png";
  const RgbImage dropped = read_image_file(rgba, ImageLimits{}, Alpha::kDrop);
  const RgbImage over_white = read_image_file(rgba, ImageLimits{}, Alpha::kOverWhite);
  EXPECT_NE(dropped.data, over_white.data) << "the golden RGBA image has transparent pixels";
}

TEST(ClipImagePreprocess, CenterCropCutsTheMiddleAndPadsWithZeros) {
  RgbImage im;
  im.width = 5;
  im.height = 2;
  for (int i = 0; i < 10; ++i) im.data.insert(im.data.end(), {uint8_t(i), uint8_t(i), uint8_t(i)});
  // Wider than the crop: columns 1..3 ((5 - 3) // 2 = 1); taller crop: padded, ceil(2/2)=1 row
  // of zeros on top and 1 below ((2 - 4) // 2 = -1).
  const RgbImage c = center_crop(im, 4, 3);
  ASSERT_EQ(c.data.size(), 4u * 3 * 3);
  const std::vector<int> want = {0, 0, 0, 1, 2, 3, 6, 7, 8, 0, 0, 0};
  for (int p = 0; p < 12; ++p) EXPECT_EQ(c.data[p * 3], want[p]) << "pixel " << p;
}

TEST(ClipImagePreprocess, UnsupportedSettingsAreClearErrors) {
  const std::string dir = ::testing::TempDir() + "/clip_pre";
  std::filesystem::create_directories(dir);
  const auto with = [&](const std::string& json) {
    std::ofstream(dir + "/preprocessor_config.json") << json;
    try {
      load_clip_preprocess_config(dir, 40);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  EXPECT_NE(with(R"({"resample": 2})").find("'resample' must be 3"), std::string::npos);
  EXPECT_NE(with(R"({"crop_size": 32})").find("'crop_size' is 32x32"), std::string::npos);
  EXPECT_NE(with(R"({"size": {"height": 40}})").find("'size' must hold 'shortest_edge'"),
            std::string::npos);
  EXPECT_NE(with(R"({"do_center_crop": false})").find("'do_center_crop' must be true"),
            std::string::npos);
  EXPECT_EQ(with(R"({"size": {"shortest_edge": 48}, "crop_size": {"height": 40, "width": 40}})"),
            "(no error)");
  std::filesystem::remove(dir + "/preprocessor_config.json");
  EXPECT_EQ(load_clip_preprocess_config(dir, 40).shortest_edge, 40);  // CLIP's defaults
}

}  // namespace
}  // namespace flamingo
