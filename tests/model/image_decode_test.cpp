// Tests for model/image_decode: exact agreement with the golden decoded images (Pillow 9.4 +
// transformers' convert_to_rgb) and with Pillow itself on a generated suite covering every PNG
// colour type / bit depth / tRNS / interlace and several JPEG variants; error handling for
// truncated, corrupt, oversized and unreadable input. All pixel comparisons are exact (uint8).
#include "model/image_decode.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
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

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << path;
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(in)),
                              std::istreambuf_iterator<char>());
}

void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
}

// Exact comparison against an HxWx3 uint8 array; the message names the first differing pixel.
::testing::AssertionResult same_pixels(const RgbImage& got, const NpyArray& want) {
  if (want.dtype != "|u1" || want.shape.size() != 3 || want.shape[2] != 3) {
    return ::testing::AssertionFailure() << "reference is not HxWx3 uint8 (" << want.dtype << ")";
  }
  if (got.height != want.shape[0] || got.width != want.shape[1]) {
    return ::testing::AssertionFailure() << "size " << got.width << "x" << got.height
                                         << ", expected " << want.shape[1] << "x" << want.shape[0];
  }
  if (got.data.size() != want.bytes.size()) {
    return ::testing::AssertionFailure() << "data size " << got.data.size();
  }
  std::size_t mismatches = 0;
  std::size_t first = 0;
  for (std::size_t i = 0; i < got.data.size(); ++i) {
    if (got.data[i] != want.bytes[i]) {
      if (mismatches++ == 0) first = i;
    }
  }
  if (mismatches == 0) return ::testing::AssertionSuccess();
  const std::size_t pixel = first / 3;
  return ::testing::AssertionFailure()
         << mismatches << " of " << got.data.size()
         << " values differ; first at x=" << pixel % got.width << " y=" << pixel / got.width
         << " channel " << first % 3 << ": got " << int(got.data[first]) << ", expected "
         << int(want.bytes[first]);
}

nlohmann::json golden_images_json() {
  std::ifstream in(kGolden + "/images/images.json");
  return nlohmann::json::parse(in);
}

std::string stem(const std::string& file) { return std::filesystem::path(file).stem().string(); }

// Expects `fn` to throw flamingo::Error whose message contains every part.
template <class Fn>
void expect_error(Fn&& fn, const std::vector<std::string>& parts) {
  try {
    fn();
    ADD_FAILURE() << "no Error thrown; expected one containing '" << parts.front() << "'";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_EQ(message.find('\n'), std::string::npos) << "multi-line message: " << message;
    for (const std::string& part : parts) {
      EXPECT_NE(message.find(part), std::string::npos)
          << "message '" << message << "' lacks '" << part << "'";
    }
  }
}

uint32_t crc32(const uint8_t* data, std::size_t size) {
  uint32_t crc = 0xffffffffu;
  for (std::size_t i = 0; i < size; ++i) {
    crc ^= data[i];
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1u)));
  }
  return ~crc;
}

void put_be32(std::vector<uint8_t>& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<uint8_t>(v >> shift));
}

void put_chunk(std::vector<uint8_t>& out, const char* type, const std::vector<uint8_t>& data) {
  put_be32(out, static_cast<uint32_t>(data.size()));
  const std::size_t start = out.size();
  out.insert(out.end(), type, type + 4);
  out.insert(out.end(), data.begin(), data.end());
  put_be32(out, crc32(out.data() + start, out.size() - start));
}

// A PNG signature + IHDR (8-bit RGB) with the given dimensions + an IDAT of junk + IEND.
std::vector<uint8_t> png_with_dimensions(uint32_t width, uint32_t height) {
  std::vector<uint8_t> out = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
  std::vector<uint8_t> ihdr;
  put_be32(ihdr, width);
  put_be32(ihdr, height);
  ihdr.insert(ihdr.end(), {8, 2, 0, 0, 0});
  put_chunk(out, "IHDR", ihdr);
  put_chunk(out, "IDAT", {0x78, 0x9c, 0x03, 0x00});
  put_chunk(out, "IEND", {});
  return out;
}

// Offset of the first SOFn marker's segment (the byte after 0xFF 0xCn) in a JPEG.
std::size_t find_sof(const std::vector<uint8_t>& jpeg) {
  for (std::size_t i = 2; i + 1 < jpeg.size(); ++i) {
    if (jpeg[i] == 0xFF && (jpeg[i + 1] == 0xC0 || jpeg[i + 1] == 0xC2)) return i + 2;
  }
  return 0;
}

TEST(ImageDecodeTest, GoldenImagesDecodeToTheGoldenPixels) {
  const nlohmann::json images = golden_images_json();
  ASSERT_EQ(images.size(), 8u);
  for (const auto& [file, info] : images.items()) {
    SCOPED_TRACE(file);
    const RgbImage image = read_image_file(kGolden + "/images/" + file, ImageLimits{});
    EXPECT_EQ(image.width, info["size_wh"][0].get<int>());
    EXPECT_EQ(image.height, info["size_wh"][1].get<int>());
    EXPECT_TRUE(same_pixels(image, load_npy(kGolden + "/images/" + stem(file) + ".rgb_uint8.npy")));
  }
}

TEST(ImageDecodeTest, ProbeReadsFormatAndSizeFromTheHeader) {
  const nlohmann::json images = golden_images_json();
  for (const auto& [file, info] : images.items()) {
    SCOPED_TRACE(file);
    const std::vector<uint8_t> bytes = read_bytes(kGolden + "/images/" + file);
    const ImageHeader header = probe_image(bytes.data(), bytes.size(), file);
    EXPECT_EQ(header.format, info["format"] == "PNG" ? ImageFormat::kPng : ImageFormat::kJpeg);
    EXPECT_EQ(header.width, info["size_wh"][0].get<int>());
    EXPECT_EQ(header.height, info["size_wh"][1].get<int>());
  }
  // The header alone is enough: probing a PNG cut right after IHDR works, decoding does not.
  const std::vector<uint8_t> png = read_bytes(kGolden + "/images/mug_P_60x60.png");
  const ImageHeader header = probe_image(png.data(), 33, "mug");
  EXPECT_EQ(header.width, 60);
  EXPECT_EQ(header.height, 60);
}

// Every PNG colour type and bit depth (with tRNS and Adam7 variants), PNGs and JPEGs saved by
// Pillow (baseline 4:4:4/4:2:2/4:2:0, progressive, optimized, odd sizes, grayscale, CMYK):
// decoded by Pillow + convert_to_rgb in the oracle, compared exactly.
TEST(ImageDecodeTest, MatchesPillowOnGeneratedSuite) {
  TempDir dir("flamingo_decode");
  const std::string oracle_error = testing::run_pillow_oracle("decode", dir.path());
  ASSERT_EQ(oracle_error, "");
  std::ifstream manifest(dir.file("manifest.txt"));
  std::string name;
  std::string file;
  int count = 0;
  while (manifest >> name >> file) {
    SCOPED_TRACE(file);
    ++count;
    const std::vector<uint8_t> bytes = read_bytes(dir.file(file));
    try {
      const RgbImage image = decode_image(bytes.data(), bytes.size(), ImageLimits{}, file);
      EXPECT_TRUE(same_pixels(image, load_npy(dir.file(name + ".rgb.npy"))));
    } catch (const Error& e) {
      ADD_FAILURE() << e.what();
    }
  }
  // The oracle leaves out images Pillow cannot decode; it must not have dropped any.
  EXPECT_EQ(count, 67);
}

TEST(ImageDecodeTest, RejectsUnknownAndEmptyData) {
  const std::vector<uint8_t> garbage = {'G', 'I', 'F', '8', '9', 'a', 1, 2, 3, 4, 5};
  expect_error([&] { decode_image(garbage.data(), garbage.size(), ImageLimits{}, "junk.gif"); },
               {"image 'junk.gif'", "unknown image format", "47 49 46 38"});
  expect_error([&] { decode_image(nullptr, 0, ImageLimits{}, "image 3"); },
               {"image 'image 3'", "empty"});
  std::mt19937 rng(7);
  std::vector<uint8_t> noise(4096);
  for (auto& b : noise) b = static_cast<uint8_t>(rng());
  noise[0] = 0x00;
  expect_error([&] { decode_image(noise.data(), noise.size(), ImageLimits{}, "noise"); },
               {"unknown image format"});
}

TEST(ImageDecodeTest, RejectsTruncatedPng) {
  const std::vector<uint8_t> png = read_bytes(kGolden + "/images/sun_cloud_70x35.png");
  ASSERT_GT(png.size(), 200u);
  expect_error([&] { decode_image(png.data(), 20, ImageLimits{}, "cut.png"); },
               {"image 'cut.png'", "truncated PNG header", "need 29 bytes, got 20"});
  for (std::size_t cut :
       {std::size_t{33}, std::size_t{45}, std::size_t{60}, png.size() / 2, png.size() - 20}) {
    SCOPED_TRACE(cut);
    expect_error([&] { decode_image(png.data(), cut, ImageLimits{}, "cut.png"); },
                 {"image 'cut.png'", "invalid PNG", "truncated"});
  }
}

TEST(ImageDecodeTest, RejectsCorruptPng) {
  std::vector<uint8_t> png = read_bytes(kGolden + "/images/lamp_rgba_50x41.png");
  // Damage the compressed data in the middle of the file (IDAT's CRC then fails too).
  for (std::size_t i = png.size() / 2; i < png.size() / 2 + 16; ++i) png[i] ^= 0x5a;
  expect_error([&] { decode_image(png.data(), png.size(), ImageLimits{}, "bad.png"); },
               {"image 'bad.png'", "invalid PNG"});

  std::vector<uint8_t> no_ihdr = read_bytes(kGolden + "/images/leaf_42x42.png");
  std::memcpy(no_ihdr.data() + 12, "IHDX", 4);
  expect_error([&] { decode_image(no_ihdr.data(), no_ihdr.size(), ImageLimits{}, "x.png"); },
               {"malformed PNG header", "IHDX"});

  const std::vector<uint8_t> zero = png_with_dimensions(0, 5);
  expect_error([&] { decode_image(zero.data(), zero.size(), ImageLimits{}, "zero.png"); },
               {"invalid PNG dimensions 0x5"});
}

TEST(ImageDecodeTest, ChecksDeclaredPixelsBeforeDecoding) {
  const std::vector<uint8_t> huge = png_with_dimensions(100000, 100000);
  const ImageHeader header = probe_image(huge.data(), huge.size(), "huge.png");
  EXPECT_EQ(header.width, 100000);
  EXPECT_EQ(header.height, 100000);
  expect_error([&] { decode_image(huge.data(), huge.size(), ImageLimits{}, "huge.png"); },
               {"image 'huge.png'", "100000x100000 = 10000000000 pixels",
                "exceeds the limit of 40000000 (max_pixels)"});

  // A valid golden image over a smaller limit is refused the same way.
  const std::vector<uint8_t> png = read_bytes(kGolden + "/images/sun_cloud_70x35.png");
  ImageLimits small;
  small.max_pixels = 70 * 35 - 1;
  expect_error([&] { decode_image(png.data(), png.size(), small, "sun"); },
               {"70x35 = 2450 pixels exceeds the limit of 2449 (max_pixels)"});
  small.max_pixels = 70 * 35;
  EXPECT_EQ(decode_image(png.data(), png.size(), small, "sun").width, 70);

  // JPEG: the frame header rewritten to 65535x65535.
  std::vector<uint8_t> jpeg = read_bytes(kGolden + "/images/chair_baseline_100x80.jpg");
  const std::size_t sof = find_sof(jpeg);
  ASSERT_NE(sof, 0u);
  for (int i = 3; i < 7; ++i) jpeg[sof + i] = 0xFF;
  expect_error([&] { decode_image(jpeg.data(), jpeg.size(), ImageLimits{}, "big.jpg"); },
               {"image 'big.jpg'", "65535x65535 = 4294836225 pixels",
                "exceeds the limit of 40000000 (max_pixels)"});
  jpeg[sof + 3] = jpeg[sof + 4] = 0;  // height 0
  expect_error([&] { decode_image(jpeg.data(), jpeg.size(), ImageLimits{}, "zero.jpg"); },
               {"invalid JPEG dimensions 65535x0"});
}

TEST(ImageDecodeTest, ChecksByteLimit) {
  const std::vector<uint8_t> png = read_bytes(kGolden + "/images/cat_face_28x28.png");
  ImageLimits limits;
  limits.max_bytes = png.size() - 1;
  expect_error([&] { decode_image(png.data(), png.size(), limits, "cat"); },
               {"image 'cat'", std::to_string(png.size()) + " bytes exceeds the limit of " +
                                   std::to_string(png.size() - 1) + " (max_bytes)"});
  expect_error([&] { read_image_file(kGolden + "/images/cat_face_28x28.png", limits); },
               {"cat_face_28x28.png", "(max_bytes)"});
}

TEST(ImageDecodeTest, RejectsTruncatedJpeg) {
  for (const char* file : {"chair_baseline_100x80.jpg", "fish_progressive_84x63.jpg"}) {
    const std::vector<uint8_t> jpeg = read_bytes(kGolden + "/images/" + file);
    for (std::size_t cut :
         {std::size_t{3}, std::size_t{20}, std::size_t{200}, jpeg.size() / 2, jpeg.size() - 2}) {
      SCOPED_TRACE(std::string(file) + " cut at " + std::to_string(cut));
      expect_error([&] { decode_image(jpeg.data(), cut, ImageLimits{}, file); },
                   {"image '" + std::string(file) + "'", "JPEG"});
    }
  }
}

TEST(ImageDecodeTest, ReadImageFileNamesTheUnreadablePath) {
  expect_error([] { read_image_file("/nonexistent/dir/cat.png", ImageLimits{}); },
               {"image file '/nonexistent/dir/cat.png'", "cannot read"});
  expect_error([] { read_image_file(kGolden + "/images", ImageLimits{}); },
               {"image file '" + kGolden + "/images'", "cannot read"});
  TempDir dir("flamingo_decode_file");
  write_bytes(dir.file("empty.png"), {});
  expect_error([&] { read_image_file(dir.file("empty.png"), ImageLimits{}); },
               {"image '" + dir.file("empty.png") + "'", "empty"});
}

// Random byte flips and truncations of every golden image: each decode either returns a
// consistent image or throws flamingo::Error (run under ASan/UBSan to check memory safety).
TEST(ImageDecodeTest, MutatedInputsNeverCrash) {
  const nlohmann::json images = golden_images_json();
  std::mt19937 rng(20240917);
  int decoded = 0;
  int rejected = 0;
  for (const auto& [file, info] : images.items()) {
    const std::vector<uint8_t> original = read_bytes(kGolden + "/images/" + file);
    for (int trial = 0; trial < 150; ++trial) {
      std::vector<uint8_t> bytes = original;
      const int flips = 1 + static_cast<int>(rng() % 8);
      for (int f = 0; f < flips; ++f) bytes[rng() % bytes.size()] ^= 1u << (rng() % 8);
      if (trial % 3 == 0) bytes.resize(rng() % bytes.size());
      try {
        const RgbImage image = decode_image(bytes.data(), bytes.size(), ImageLimits{}, file);
        ASSERT_GT(image.width, 0);
        ASSERT_GT(image.height, 0);
        ASSERT_EQ(image.data.size(), static_cast<std::size_t>(image.width) * image.height * 3);
        ++decoded;
      } catch (const Error&) {
        ++rejected;
      }
    }
  }
  EXPECT_GT(rejected, 0);
  EXPECT_EQ(decoded + rejected, 8 * 150);
}

}  // namespace
}  // namespace flamingo
