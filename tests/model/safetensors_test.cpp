// Safetensors reader, single files: hand-built files (8-byte little-endian header length, JSON
// header, raw little-endian data, bytes written here from hand-known IEEE bit patterns) checked
// for dtype, shape, numel, nbytes, exact values and metadata; one-line errors naming the path
// for bad files. Checkpoint folders: checkpoint_test.cpp.
#include "model/safetensors.h"

#include <gtest/gtest.h>

#include <bit>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <tuple>
#include <vector>

#include "model/error.h"
#include "tests/common/process.h"
#include "tests/model/safetensors_test_util.h"

#ifndef FLAMINGO_GOLDEN_DIR
#error "FLAMINGO_GOLDEN_DIR must name tests/golden/idefics-tiny"
#endif

namespace flamingo {
namespace {

using namespace safetensors_testing;
using nlohmann::json;

// ---------------------------------------------------------------------------------------------
// Dtype table (safetensors spec names and element sizes).

TEST(StoredDtype, NamesAndSizes) {
  const std::vector<std::tuple<StoredDtype, const char*, size_t>> table = {
      {StoredDtype::kF32, "F32", 4},   {StoredDtype::kF16, "F16", 2},
      {StoredDtype::kBF16, "BF16", 2}, {StoredDtype::kF64, "F64", 8},
      {StoredDtype::kI64, "I64", 8},   {StoredDtype::kI32, "I32", 4},
      {StoredDtype::kI16, "I16", 2},   {StoredDtype::kI8, "I8", 1},
      {StoredDtype::kU8, "U8", 1},     {StoredDtype::kBool, "BOOL", 1}};
  for (const auto& [dtype, name, size] : table) {
    EXPECT_STREQ(stored_dtype_name(dtype), name);
    EXPECT_EQ(stored_dtype_size(dtype), size) << name;
  }
}

// ---------------------------------------------------------------------------------------------
// One hand-built file.

// Data section layout (deliberately not in header order, so offsets must be honoured):
//   [0, 24)  "c" I64 [1,3]   0, -1, 2^40
//   [24, 48) "a" F32 [2,3]   1, -2.5, 0.5, 0, 100, -0.125
//   [48, 56) "b" BF16 [4]    1, -2, 0.5, 3.140625
//   [56, 60) "d" F16 [2]     1, -2
//   [60, 64) "s" I32 []      123456789 (a scalar)
//   [64, 64) "z" F32 [0,3]   empty
const uint32_t kA[] = {0x3F800000u, 0xC0200000u, 0x3F000000u,
                       0x00000000u, 0x42C80000u, 0xBE000000u};
const float kAValues[] = {1.0f, -2.5f, 0.5f, 0.0f, 100.0f, -0.125f};
const uint16_t kB[] = {0x3F80, 0xC000, 0x3F00, 0x4049};
const float kBValues[] = {1.0f, -2.0f, 0.5f, 3.140625f};
const int64_t kC[] = {0, -1, int64_t{1} << 40};
const uint16_t kD[] = {0x3C00, 0xC000};

std::string hand_header() {
  return R"({"__metadata__": {"format": "pt", "note": "by hand"},
    "a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [24, 48]},
    "b": {"dtype": "BF16", "shape": [4], "data_offsets": [48, 56]},
    "c": {"dtype": "I64", "shape": [1, 3], "data_offsets": [0, 24]},
    "d": {"dtype": "F16", "shape": [2], "data_offsets": [56, 60]},
    "s": {"dtype": "I32", "shape": [], "data_offsets": [60, 64]},
    "z": {"dtype": "F32", "shape": [0, 3], "data_offsets": [64, 64]}})";
}

Bytes hand_data() {
  Bytes d;
  for (int64_t v : kC) put_u64(d, static_cast<uint64_t>(v));
  for (uint32_t v : kA) put_u32(d, v);
  for (uint16_t v : kB) put_u16(d, v);
  for (uint16_t v : kD) put_u16(d, v);
  put_u32(d, 123456789u);
  EXPECT_EQ(d.size(), 64u);
  return d;
}

void check_hand_file(const SafetensorsFile& f, const std::string& path) {
  EXPECT_EQ(f.path(), path);
  ASSERT_EQ(f.tensors().size(), 6u);  // __metadata__ is not a tensor
  EXPECT_EQ(f.metadata(),
            (std::map<std::string, std::string>{{"format", "pt"}, {"note", "by hand"}}));

  const TensorView& a = f.tensors().at("a");
  EXPECT_EQ(a.name, "a");
  EXPECT_EQ(a.file, path);
  EXPECT_EQ(a.dtype, StoredDtype::kF32);
  EXPECT_EQ(a.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(a.numel(), 6);
  EXPECT_EQ(a.nbytes, 24u);
  for (size_t i = 0; i < 6; ++i) {
    EXPECT_EQ(read_at<uint32_t>(a, i), kA[i]) << i;
    EXPECT_EQ(read_at<float>(a, i), kAValues[i]) << i;  // exact: the bit patterns are exact
  }

  const TensorView& b = f.tensors().at("b");
  EXPECT_EQ(b.dtype, StoredDtype::kBF16);
  EXPECT_EQ(b.shape, (std::vector<int64_t>{4}));
  EXPECT_EQ(b.numel(), 4);
  EXPECT_EQ(b.nbytes, 8u);
  for (size_t i = 0; i < 4; ++i) {
    const uint16_t bits = read_at<uint16_t>(b, i);
    EXPECT_EQ(bits, kB[i]) << i;
    EXPECT_EQ(f32_of_bits(static_cast<uint32_t>(bits) << 16), kBValues[i]) << i;
  }

  const TensorView& c = f.tensors().at("c");
  EXPECT_EQ(c.dtype, StoredDtype::kI64);
  EXPECT_EQ(c.shape, (std::vector<int64_t>{1, 3}));
  EXPECT_EQ(c.numel(), 3);
  EXPECT_EQ(c.nbytes, 24u);
  EXPECT_EQ(read_at<int64_t>(c, 0), 0);
  EXPECT_EQ(read_at<int64_t>(c, 1), -1);
  EXPECT_EQ(read_at<int64_t>(c, 2), 1099511627776);

  const TensorView& d = f.tensors().at("d");
  EXPECT_EQ(d.dtype, StoredDtype::kF16);
  EXPECT_EQ(d.shape, (std::vector<int64_t>{2}));
  EXPECT_EQ(d.numel(), 2);
  EXPECT_EQ(d.nbytes, 4u);
  EXPECT_EQ(read_at<uint16_t>(d, 0), 0x3C00);  // 1.0 in IEEE half
  EXPECT_EQ(read_at<uint16_t>(d, 1), 0xC000);  // -2.0

  const TensorView& s = f.tensors().at("s");
  EXPECT_EQ(s.dtype, StoredDtype::kI32);
  EXPECT_TRUE(s.shape.empty());
  EXPECT_EQ(s.numel(), 1);
  EXPECT_EQ(s.nbytes, 4u);
  EXPECT_EQ(read_at<int32_t>(s, 0), 123456789);

  const TensorView& z = f.tensors().at("z");
  EXPECT_EQ(z.shape, (std::vector<int64_t>{0, 3}));
  EXPECT_EQ(z.numel(), 0);
  EXPECT_EQ(z.nbytes, 0u);

  // Views point at 8 + header length + begin within the file: "c" starts the data section,
  // "a" follows 24 bytes later.
  EXPECT_EQ(a.data, c.data + 24);
  EXPECT_EQ(b.data, c.data + 48);
}

TEST(SafetensorsFile, ReadsHandBuiltTensorsAndMetadata) {
  testing::TempDir dir("flamingo_st_test");
  const std::string path = dir.file("hand.safetensors");
  write_safetensors(path, hand_header(), hand_data());
  SafetensorsFile f(path);
  check_hand_file(f, path);
}

TEST(SafetensorsFile, SpacePaddedHeaderAsWrittenByHf) {
  // HF pads the header with spaces to a multiple of 8 bytes.
  testing::TempDir dir("flamingo_st_test");
  const std::string path = dir.file("padded.safetensors");
  std::string header = hand_header();
  while (header.size() % 8 != 0) header += ' ';
  header += "        ";
  write_safetensors(path, header, hand_data());
  SafetensorsFile f(path);
  check_hand_file(f, path);
}

TEST(SafetensorsFile, HeaderWithoutMetadataOrTensors) {
  testing::TempDir dir("flamingo_st_test");
  const std::string path = dir.file("empty.safetensors");
  write_safetensors(path, "{}", {});
  SafetensorsFile f(path);
  EXPECT_TRUE(f.tensors().empty());
  EXPECT_TRUE(f.metadata().empty());
}

// ---------------------------------------------------------------------------------------------
// Bad files: one-line errors naming the path.

TEST(SafetensorsFileErrors, MissingFile) {
  testing::TempDir dir("flamingo_st_test");
  const std::string path = dir.file("absent.safetensors");
  expect_error([&] { SafetensorsFile f(path); }, {path});
}

TEST(SafetensorsFileErrors, ShorterThanEightBytes) {
  testing::TempDir dir("flamingo_st_test");
  const std::string path = dir.file("short.safetensors");
  write_bytes(path, Bytes{1, 0, 0, 0, 0});
  expect_error([&] { SafetensorsFile f(path); }, {path, "5 bytes"});
  write_bytes(path, Bytes{});
  expect_error([&] { SafetensorsFile f(path); }, {path, "0 bytes"});
}

TEST(SafetensorsFileErrors, HeaderLengthBeyondFile) {
  testing::TempDir dir("flamingo_st_test");
  const std::string path = dir.file("long_header.safetensors");
  Bytes b;
  put_u64(b, 1000);
  const std::string h = R"({"a": 1})";
  b.insert(b.end(), h.begin(), h.end());
  write_bytes(path, b);
  expect_error([&] { SafetensorsFile f(path); }, {path, "1000"});
  // A length that would overflow 8 + length.
  Bytes huge;
  put_u64(huge, ~uint64_t{0});
  huge.insert(huge.end(), h.begin(), h.end());
  write_bytes(path, huge);
  expect_error([&] { SafetensorsFile f(path); }, {path});
}

TEST(SafetensorsFileErrors, TruncatedData) {
  testing::TempDir dir("flamingo_st_test");
  const std::string path = dir.file("truncated.safetensors");
  Bytes data;
  put_u32(data, 0x3F800000u);  // 4 of the 8 bytes the header promises
  write_safetensors(path, R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})", data);
  expect_error([&] { SafetensorsFile f(path); }, {path, "'w'", "8"});
}

TEST(SafetensorsFileErrors, ReversedOffsets) {
  testing::TempDir dir("flamingo_st_test");
  const std::string path = dir.file("reversed.safetensors");
  Bytes data(8, 0);
  write_safetensors(path, R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [8, 4]}})", data);
  expect_error([&] { SafetensorsFile f(path); }, {path, "'w'"});
}

TEST(SafetensorsFileErrors, ByteCountDoesNotMatchDtypeAndShape) {
  testing::TempDir dir("flamingo_st_test");
  const std::string path = dir.file("mismatch.safetensors");
  Bytes data(12, 0);
  // F32 [2, 2] needs 16 bytes; 12 are given (all inside the data section).
  write_safetensors(path, R"({"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 12]}})",
                    data);
  expect_error([&] { SafetensorsFile f(path); }, {path, "'w'", "12", "16"});
  // BF16 [3] needs 6 bytes; 12 are given.
  write_safetensors(path, R"({"w": {"dtype": "BF16", "shape": [3], "data_offsets": [0, 12]}})",
                    data);
  expect_error([&] { SafetensorsFile f(path); }, {path, "'w'", "12", "6"});
}

TEST(SafetensorsFileErrors, UnknownDtype) {
  testing::TempDir dir("flamingo_st_test");
  const std::string path = dir.file("fp8.safetensors");
  Bytes data(4, 0);
  write_safetensors(
      path, R"({"fp8_w": {"dtype": "F8_E4M3", "shape": [4], "data_offsets": [0, 4]}})", data);
  expect_error([&] { SafetensorsFile f(path); }, {path, "fp8_w", "F8_E4M3"});
}

TEST(SafetensorsFileErrors, MalformedHeader) {
  testing::TempDir dir("flamingo_st_test");
  const std::string path = dir.file("bad_header.safetensors");
  write_safetensors(path, R"({"w": {"dtype": "F32", )", Bytes(4, 0));
  expect_error([&] { SafetensorsFile f(path); }, {path, "header"});
  write_safetensors(path, "[1, 2]", {});
  expect_error([&] { SafetensorsFile f(path); }, {path, "header"});
  write_safetensors(path, R"({"w": {"dtype": "F32", "shape": [1]}})", Bytes(4, 0));
  expect_error([&] { SafetensorsFile f(path); }, {path, "'w'", "data_offsets"});
  write_safetensors(path, R"({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}})",
                    Bytes(4, 0));
  expect_error([&] { SafetensorsFile f(path); }, {path, "'w'"});
  write_safetensors(path, R"({"w": {"dtype": 7, "shape": [1], "data_offsets": [0, 4]}})",
                    Bytes(4, 0));
  expect_error([&] { SafetensorsFile f(path); }, {path});
  write_safetensors(path, R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0]}})",
                    Bytes(4, 0));
  expect_error([&] { SafetensorsFile f(path); }, {path, "'w'", "data_offsets"});
}

}  // namespace
}  // namespace flamingo
