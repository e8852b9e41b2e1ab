// Checkpoint folders (model/safetensors.h): discovery (index, single model.safetensors, single
// other-named file) and its errors, and the golden sharded checkpoint (146 keys through the
// index, the stray I64 position_ids, total_size) plus its bf16 twin (round-to-nearest-even of
// the float32 weights). Single files: safetensors_test.cpp.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <bit>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <tuple>
#include <vector>

#include "model/error.h"
#include "model/safetensors.h"
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

// Shard names are plain file names of the folder: nothing outside it is opened (an index
// naming "/dev/stdin" would block the load, "../x" would read another folder).
TEST(CheckpointErrors, IndexShardNameOutsideTheFolder) {
  testing::TempDir dir("flamingo_ckpt_test");
  write_two_shards(dir);
  for (const std::string name :
       {"/dev/stdin", "../model-00001-of-00002.safetensors", "sub/x.safetensors", ".", "..", ""}) {
    write_index(dir, json{{"x.weight", name}}.dump());
    expect_error([&] { Checkpoint::open(dir.path().string()); },
                 {dir.file("model.safetensors.index.json"), "'x.weight'", "'" + name + "'",
                  "not a file name in the checkpoint folder"});
  }
}

TEST(CheckpointErrors, ShardThatIsNotARegularFileIsRefusedWithoutBlocking) {
  testing::TempDir dir("flamingo_ckpt_test");
  write_two_shards(dir);
  ASSERT_EQ(::mkfifo(dir.file("fifo.safetensors").c_str(), 0600), 0);
  write_index(dir, R"({"x.weight": "fifo.safetensors"})");
  expect_error([&] { Checkpoint::open(dir.path().string()); },
               {dir.file("fifo.safetensors"), "not a regular file"});
  std::filesystem::create_directory(dir.file("dir.safetensors"));
  write_index(dir, R"({"x.weight": "dir.safetensors"})");
  expect_error([&] { Checkpoint::open(dir.path().string()); },
               {dir.file("dir.safetensors"), "not a regular file"});
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
