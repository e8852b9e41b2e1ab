// Safetensors reader: hand-built files (8-byte little-endian header length, JSON header, raw
// little-endian data, bytes written here from hand-known IEEE bit patterns) checked for dtype,
// shape, numel, nbytes, exact values and metadata; Checkpoint folder discovery (index, single
// model.safetensors, single other-named file) and its errors; one-line errors naming the path
// for bad files; and the golden sharded checkpoint (146 keys through the index, the stray I64
// position_ids, total_size) plus its bf16 twin (round-to-nearest-even of the float32 weights).
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

#ifndef FLAMINGO_GOLDEN_DIR
#error "FLAMINGO_GOLDEN_DIR must name tests/golden/idefics-tiny"
#endif

namespace flamingo {
namespace {

using nlohmann::json;
using Bytes = std::vector<unsigned char>;

static_assert(std::endian::native == std::endian::little, "the tests read LE data in place");

// Little-endian byte writers.
void put_u16(Bytes& b, uint16_t v) {
  b.push_back(v & 0xff);
  b.push_back(v >> 8);
}
void put_u32(Bytes& b, uint32_t v) {
  for (int i = 0; i < 4; ++i) b.push_back((v >> (8 * i)) & 0xff);
}
void put_u64(Bytes& b, uint64_t v) {
  for (int i = 0; i < 8; ++i) b.push_back((v >> (8 * i)) & 0xff);
}

void write_bytes(const std::string& path, const Bytes& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

// A safetensors file: u64 LE header length, the header text, then `data`.
void write_safetensors(const std::string& path, const std::string& header, const Bytes& data) {
  Bytes b;
  put_u64(b, header.size());
  b.insert(b.end(), header.begin(), header.end());
  b.insert(b.end(), data.begin(), data.end());
  write_bytes(path, b);
}

// One F32 tensor "name" of shape [n] holding `values` (bit patterns), alone in a file.
void write_f32_file(const std::string& path, const std::string& name,
                    std::initializer_list<uint32_t> bits) {
  Bytes data;
  for (uint32_t v : bits) put_u32(data, v);
  write_safetensors(path,
                    R"({")" + name + R"(": {"dtype": "F32", "shape": [)" +
                        std::to_string(bits.size()) + R"(], "data_offsets": [0, )" +
                        std::to_string(data.size()) + "]}}",
                    data);
}

template <typename T>
T read_at(const TensorView& v, size_t i) {
  T out;
  std::memcpy(&out, v.data + i * sizeof(T), sizeof(T));  // data may be unaligned
  return out;
}

float f32_of_bits(uint32_t bits) { return std::bit_cast<float>(bits); }

// Expects `fn` to throw a flamingo::Error with a one-line message containing every needle.
template <typename Fn>
std::string expect_error(Fn fn, std::initializer_list<std::string> needles) {
  try {
    fn();
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "multi-line message: " << msg;
    for (const std::string& n : needles) {
      EXPECT_NE(msg.find(n), std::string::npos) << "'" << n << "' missing from: " << msg;
    }
    return msg;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected flamingo::Error, got: " << e.what();
    return {};
  }
  ADD_FAILURE() << "expected flamingo::Error";
  return {};
}

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

// ---------------------------------------------------------------------------------------------
// Checkpoint folders.

// Shard 1: "x.weight" F32 [2] {1, -2.5}, "y" I64 [1] {7}.  Shard 2: "z" BF16 [2] {1, -2}.
void write_two_shards(const testing::TempDir& dir) {
  Bytes d1;
  put_u32(d1, 0x3F800000u);
  put_u32(d1, 0xC0200000u);
  put_u64(d1, 7);
  write_safetensors(dir.file("model-00001-of-00002.safetensors"),
                    R"({"__metadata__": {"format": "pt"},
                        "x.weight": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                        "y": {"dtype": "I64", "shape": [1], "data_offsets": [8, 16]}})",
                    d1);
  Bytes d2;
  put_u16(d2, 0x3F80);
  put_u16(d2, 0xC000);
  write_safetensors(dir.file("model-00002-of-00002.safetensors"),
                    R"({"z": {"dtype": "BF16", "shape": [2], "data_offsets": [0, 4]}})", d2);
}

void write_index(const testing::TempDir& dir, const std::string& weight_map) {
  std::ofstream out(dir.file("model.safetensors.index.json"));
  out << R"({"metadata": {"total_size": 20}, "weight_map": )" << weight_map << "}";
}

TEST(Checkpoint, ShardedFolderThroughIndex) {
  testing::TempDir dir("flamingo_ckpt_test");
  write_two_shards(dir);
  write_index(dir, R"({"x.weight": "model-00001-of-00002.safetensors",
                       "y": "model-00001-of-00002.safetensors",
                       "z": "model-00002-of-00002.safetensors"})");
  const Checkpoint ckpt = Checkpoint::open(dir.path().string());
  EXPECT_EQ(ckpt.dir(), dir.path().string());
  EXPECT_EQ(ckpt.names(), (std::vector<std::string>{"x.weight", "y", "z"}));

  const TensorView* x = ckpt.find("x.weight");
  ASSERT_NE(x, nullptr);
  EXPECT_EQ(x->file, dir.file("model-00001-of-00002.safetensors"));
  EXPECT_EQ(x->dtype, StoredDtype::kF32);
  EXPECT_EQ(read_at<float>(*x, 0), 1.0f);
  EXPECT_EQ(read_at<float>(*x, 1), -2.5f);

  const TensorView* y = ckpt.find("y");
  ASSERT_NE(y, nullptr);
  EXPECT_EQ(y->dtype, StoredDtype::kI64);
  EXPECT_EQ(read_at<int64_t>(*y, 0), 7);

  const TensorView* z = ckpt.find("z");
  ASSERT_NE(z, nullptr);
  EXPECT_EQ(z->file, dir.file("model-00002-of-00002.safetensors"));
  EXPECT_EQ(z->dtype, StoredDtype::kBF16);
  EXPECT_EQ(z->shape, (std::vector<int64_t>{2}));
  EXPECT_EQ(read_at<uint16_t>(*z, 0), 0x3F80);
  EXPECT_EQ(read_at<uint16_t>(*z, 1), 0xC000);

  EXPECT_EQ(ckpt.find("absent"), nullptr);
  EXPECT_EQ(ckpt.find("x"), nullptr);
}

TEST(Checkpoint, KeepAliveOutlivesTheCheckpoint) {
  testing::TempDir dir("flamingo_ckpt_test");
  write_f32_file(dir.file("model.safetensors"), "w", {0x40490FDBu});  // float(pi)
  std::shared_ptr<const void> keep;
  const std::byte* data = nullptr;
  {
    const Checkpoint ckpt = Checkpoint::open(dir.path().string());
    const TensorView* w = ckpt.find("w");
    ASSERT_NE(w, nullptr);
    data = w->data;
    keep = ckpt.keep_alive();
  }
  float v = 0;
  std::memcpy(&v, data, 4);
  EXPECT_EQ(v, 3.14159274f);
}

TEST(Checkpoint, CopiesShareTheMappings) {
  testing::TempDir dir("flamingo_ckpt_test");
  write_f32_file(dir.file("model.safetensors"), "w", {0x3F800000u, 0x40000000u});
  Checkpoint copy = Checkpoint::open(dir.path().string());
  {
    const Checkpoint original = Checkpoint::open(dir.path().string());
    copy = original;
  }
  const TensorView* w = copy.find("w");
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(read_at<float>(*w, 1), 2.0f);
}

TEST(Checkpoint, SingleModelSafetensors) {
  testing::TempDir dir("flamingo_ckpt_test");
  write_f32_file(dir.file("model.safetensors"), "w", {0x3F800000u, 0xBF800000u});
  const Checkpoint ckpt = Checkpoint::open(dir.path().string());
  EXPECT_EQ(ckpt.names(), (std::vector<std::string>{"w"}));
  const TensorView* w = ckpt.find("w");
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->file, dir.file("model.safetensors"));
  EXPECT_EQ(read_at<float>(*w, 0), 1.0f);
  EXPECT_EQ(read_at<float>(*w, 1), -1.0f);
}

TEST(Checkpoint, ModelSafetensorsWinsOverOtherFiles) {
  testing::TempDir dir("flamingo_ckpt_test");
  write_f32_file(dir.file("model.safetensors"), "w", {0x3F800000u});
  write_f32_file(dir.file("adapter.safetensors"), "other", {0x40000000u});
  const Checkpoint ckpt = Checkpoint::open(dir.path().string());
  EXPECT_EQ(ckpt.names(), (std::vector<std::string>{"w"}));
}

TEST(Checkpoint, SingleOtherNamedFile) {
  testing::TempDir dir("flamingo_ckpt_test");
  write_f32_file(dir.file("weights.safetensors"), "v", {0x42C80000u});
  {
    std::ofstream(dir.file("config.json")) << "{}";  // non-safetensors files are ignored
  }
  const Checkpoint ckpt = Checkpoint::open(dir.path().string());
  EXPECT_EQ(ckpt.names(), (std::vector<std::string>{"v"}));
  const TensorView* v = ckpt.find("v");
  ASSERT_NE(v, nullptr);
  EXPECT_EQ(v->file, dir.file("weights.safetensors"));
  EXPECT_EQ(read_at<float>(*v, 0), 100.0f);
}

TEST(CheckpointErrors, TwoFilesWithoutIndex) {
  testing::TempDir dir("flamingo_ckpt_test");
  write_f32_file(dir.file("a.safetensors"), "w", {0});
  write_f32_file(dir.file("b.safetensors"), "v", {0});
  expect_error([&] { Checkpoint::open(dir.path().string()); },
               {dir.path().string(), "2", "model.safetensors.index.json"});
}

TEST(CheckpointErrors, NothingLoadable) {
  testing::TempDir dir("flamingo_ckpt_test");
  { std::ofstream(dir.file("config.json")) << "{}"; }
  expect_error([&] { Checkpoint::open(dir.path().string()); }, {dir.path().string()});
}

TEST(CheckpointErrors, MissingFolder) {
  testing::TempDir dir("flamingo_ckpt_test");
  const std::string missing = dir.file("no_such_folder");
  expect_error([&] { Checkpoint::open(missing); }, {missing});
}

TEST(CheckpointErrors, IndexNamesMissingShard) {
  testing::TempDir dir("flamingo_ckpt_test");
  write_two_shards(dir);
  write_index(dir, R"({"x.weight": "model-00001-of-00002.safetensors",
                       "q": "model-00003-of-00003.safetensors"})");
  expect_error([&] { Checkpoint::open(dir.path().string()); },
               {"model-00003-of-00003.safetensors", "'q'", "model.safetensors.index.json"});
}

TEST(CheckpointErrors, IndexKeyAbsentFromItsShard) {
  testing::TempDir dir("flamingo_ckpt_test");
  write_two_shards(dir);
  // "z" lives in shard 2, but the index says shard 1.
  write_index(dir, R"({"x.weight": "model-00001-of-00002.safetensors",
                       "z": "model-00001-of-00002.safetensors"})");
  expect_error([&] { Checkpoint::open(dir.path().string()); },
               {"'z'", dir.file("model-00001-of-00002.safetensors")});
}

TEST(CheckpointErrors, MalformedIndex) {
  testing::TempDir dir("flamingo_ckpt_test");
  write_two_shards(dir);
  { std::ofstream(dir.file("model.safetensors.index.json")) << R"({"weight_map": {)"; }
  expect_error([&] { Checkpoint::open(dir.path().string()); },
               {dir.file("model.safetensors.index.json")});
  { std::ofstream(dir.file("model.safetensors.index.json")) << R"({"metadata": {}})"; }
  expect_error([&] { Checkpoint::open(dir.path().string()); },
               {dir.file("model.safetensors.index.json"), "weight_map"});
  write_index(dir, R"({"x.weight": 3})");
  expect_error([&] { Checkpoint::open(dir.path().string()); },
               {dir.file("model.safetensors.index.json"), "x.weight"});
}

TEST(CheckpointErrors, BadShardNamesTheShard) {
  testing::TempDir dir("flamingo_ckpt_test");
  write_two_shards(dir);
  write_bytes(dir.file("model-00002-of-00002.safetensors"), Bytes{1, 2, 3});
  write_index(dir, R"({"x.weight": "model-00001-of-00002.safetensors",
                       "z": "model-00002-of-00002.safetensors"})");
  expect_error([&] { Checkpoint::open(dir.path().string()); },
               {dir.file("model-00002-of-00002.safetensors")});
}

// ---------------------------------------------------------------------------------------------
// Golden checkpoint.

json read_json(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << path;
  return json::parse(in);
}

TEST(CheckpointGolden, EveryIndexKeyFoundInItsShard) {
  const std::string dir = FLAMINGO_GOLDEN_DIR "/model";
  const json index = read_json(dir + "/model.safetensors.index.json");
  const json& weight_map = index.at("weight_map");
  ASSERT_EQ(weight_map.size(), 146u);  // 145 parameters + the stray position_ids

  const Checkpoint ckpt = Checkpoint::open(dir);
  EXPECT_EQ(ckpt.names().size(), 146u);
  std::map<std::string, int> per_shard;
  uint64_t total_bytes = 0;
  for (const auto& [key, shard] : weight_map.items()) {
    const TensorView* v = ckpt.find(key);
    ASSERT_NE(v, nullptr) << key;
    EXPECT_EQ(v->name, key);
    EXPECT_EQ(v->file, dir + "/" + shard.get<std::string>()) << key;
    EXPECT_EQ(v->nbytes, static_cast<size_t>(v->numel()) * stored_dtype_size(v->dtype)) << key;
    if (key != "model.vision_model.embeddings.position_ids") {
      EXPECT_EQ(v->dtype, StoredDtype::kF32) << key;
    }
    ++per_shard[shard.get<std::string>()];
    total_bytes += v->nbytes;
  }
  // README: 82 / 32 / 32 tensors per shard; total_size counts every byte, position_ids too.
  EXPECT_EQ(per_shard, (std::map<std::string, int>{{"model-00001-of-00003.safetensors", 82},
                                                   {"model-00002-of-00003.safetensors", 32},
                                                   {"model-00003-of-00003.safetensors", 32}}));
  EXPECT_EQ(total_bytes, index.at("metadata").at("total_size").get<uint64_t>());
  EXPECT_EQ(total_bytes, 837992u);

  // Hand-checked shapes from the golden README.
  const TensorView* embed = ckpt.find("model.embed_tokens.weight");
  ASSERT_NE(embed, nullptr);
  EXPECT_EQ(embed->shape, (std::vector<int64_t>{400, 48}));
  // The six alpha gates equal stats.json["alphas"] (float64 draws, stored as float32: exact
  // after rounding the float64 to float).
  const json stats = read_json(FLAMINGO_GOLDEN_DIR "/stats.json");
  ASSERT_EQ(stats.at("alphas").size(), 6u);
  for (const auto& [key, values] : stats.at("alphas").items()) {
    const TensorView* alpha = ckpt.find(key);
    ASSERT_NE(alpha, nullptr) << key;
    EXPECT_EQ(alpha->shape, (std::vector<int64_t>{1})) << key;
    EXPECT_EQ(read_at<float>(*alpha, 0), static_cast<float>(values.at(0).get<double>())) << key;
  }
  const TensorView* alpha0 = ckpt.find("model.gated_cross_attn_layers.0.alpha_cross_attn");
  ASSERT_NE(alpha0, nullptr);
  EXPECT_NEAR(read_at<float>(*alpha0, 0), -0.70254f, 1e-5f);  // README table, 5 decimals
}

TEST(CheckpointGolden, StrayPositionIdsAreI64ZeroToNine) {
  const Checkpoint ckpt = Checkpoint::open(FLAMINGO_GOLDEN_DIR "/model");
  const TensorView* p = ckpt.find("model.vision_model.embeddings.position_ids");
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->dtype, StoredDtype::kI64);
  EXPECT_EQ(p->shape, (std::vector<int64_t>{1, 10}));
  EXPECT_EQ(p->numel(), 10);
  EXPECT_EQ(p->nbytes, 80u);
  for (int64_t i = 0; i < 10; ++i) EXPECT_EQ(read_at<int64_t>(*p, i), i);
}

TEST(CheckpointGolden, Bf16TwinIsTheRoundedFloat32Weights) {
  const Checkpoint f32 = Checkpoint::open(FLAMINGO_GOLDEN_DIR "/model");
  const Checkpoint bf16 = Checkpoint::open(FLAMINGO_GOLDEN_DIR "/model_bf16");
  std::vector<std::string> expected_names = f32.names();
  std::erase(expected_names, "model.vision_model.embeddings.position_ids");
  ASSERT_EQ(bf16.names(), expected_names);  // 145 tensors, no stray buffer
  EXPECT_EQ(bf16.names().size(), 145u);
  int64_t elements = 0;
  for (const std::string& name : bf16.names()) {
    const TensorView* a = f32.find(name);
    const TensorView* b = bf16.find(name);
    ASSERT_NE(a, nullptr);
    ASSERT_NE(b, nullptr);
    EXPECT_EQ(b->file, FLAMINGO_GOLDEN_DIR "/model_bf16/model.safetensors");
    ASSERT_EQ(b->dtype, StoredDtype::kBF16) << name;
    ASSERT_EQ(b->shape, a->shape) << name;
    int mismatches = 0;
    for (int64_t i = 0; i < a->numel(); ++i) {
      // torch's float32 -> bfloat16: round to nearest, ties to even (no NaNs here).
      const uint32_t x = read_at<uint32_t>(*a, i);
      const uint16_t rne = static_cast<uint16_t>((x + 0x7FFFu + ((x >> 16) & 1u)) >> 16);
      if (read_at<uint16_t>(*b, i) != rne) ++mismatches;
    }
    EXPECT_EQ(mismatches, 0) << name;
    elements += a->numel();
  }
  EXPECT_EQ(elements, 209478);  // README: 209,478 parameters
}

}  // namespace
}  // namespace flamingo
