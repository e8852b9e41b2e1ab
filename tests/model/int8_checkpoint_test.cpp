// int8 checkpoints (model/int8_checkpoint.h, docs/QUANTIZATION.md): `flamingo-cli quantize`'s
// writer reloads to the bits of quantizing at load (float32 and bfloat16 sources and compute);
// a checkpoint written here independently - its own quantizer and safetensors bytes, following
// only the documented format - loads to the same bits (so the kernels' quantizer and the format
// are what the document says); bad quantization configs, missing or mistyped scales, values
// outside [-127, 127], truncated shards and wrong flags get errors naming the key or tensor.
#include "model/int8_checkpoint.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <vector>

#include "model/error.h"
#include "model/flamingo.h"
#include "model/safetensors.h"
#include "tests/common/golden_model.h"
#include "tests/common/model_error.h"
#include "tests/common/process.h"

namespace flamingo {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testing::error_of;
using testing::golden_cases;
using testing::golden_model;
using testing::golden_path;
using testing::golden_prompt;
using testing::prompt_logits;
using testing::TempDir;

std::unique_ptr<FlamingoModel> load(const std::string& dir, const std::string& dtype,
                                    const std::string& weights = "auto") {
  ModelOptions o;
  o.dtype = dtype;
  o.weights = weights;
  return FlamingoModel::load(dir, o);
}

void expect_same_logits(const FlamingoModel& a, const FlamingoModel& b, const std::string& c) {
  const at::Tensor la = prompt_logits(a, golden_prompt(a, c));
  const at::Tensor lb = prompt_logits(b, golden_prompt(b, c));
  EXPECT_TRUE(at::equal(la, lb)) << c << ": max |d| " << (la - lb).abs().max().item<float>();
}

TEST(Int8Checkpoint, ReloadGivesTheBitsOfQuantizingAtLoad) {
  TempDir dir("flamingo_int8ckpt");
  const std::string out = (dir.path() / "q").string();
  const QuantizeSummary s = write_int8_checkpoint(golden_path("model"), out);
  EXPECT_GT(s.weights_quantized, 50);
  EXPECT_EQ(s.shards, 3);
  EXPECT_LT(s.bytes_out, s.bytes_in / 2);
  for (const auto& e : fs::directory_iterator(golden_path("model"))) {
    EXPECT_TRUE(fs::exists(fs::path(out) / e.path().filename())) << e.path().filename();
  }
  const json cfg = json::parse(std::ifstream(fs::path(out) / "config.json"));
  EXPECT_EQ(cfg["quantization_config"]["quant_method"], "flamingo_int8");
  EXPECT_EQ(cfg["quantization_config"]["group_size"], 64);

  const auto m = load(out, "float32");
  EXPECT_EQ(m->weight_type(), kernels::WeightType::kInt8);
  const FlamingoModel& at_load = golden_model("model", "float32", "int8");
  EXPECT_EQ(m->weight_bytes(), at_load.weight_bytes());
  for (const std::string& c : golden_cases()) expect_same_logits(*m, at_load, c);
  const auto mb = load(out, "bfloat16", "int8");
  expect_same_logits(*mb, golden_model("model", "bfloat16", "int8"), golden_cases()[0]);
}

TEST(Int8Checkpoint, Bf16SourceReloadsToTheSameBits) {
  TempDir dir("flamingo_int8ckpt");
  const std::string out = (dir.path() / "q").string();
  const QuantizeSummary s = write_int8_checkpoint(golden_path("model_bf16"), out);
  EXPECT_EQ(s.shards, 1);
  EXPECT_FALSE(fs::exists(fs::path(out) / "model.safetensors.index.json"));
  const auto m = load(out, "float32");
  expect_same_logits(*m, golden_model("model_bf16", "float32", "int8"), golden_cases()[1]);
}

// ---- an int8 checkpoint written from the documentation alone ----

// Per row, per group of 64 along K: scale = max|w| / 127, q = round half to even (w / scale).
void quantize_rows(const float* w, int64_t n, int64_t k, std::vector<int8_t>& q,
                   std::vector<float>& scales) {
  const int64_t groups = (k + 63) / 64;
  q.assign(n * k, 0);
  scales.assign(n * groups, 0.f);
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t a = g * 64, b = std::min(k, a + 64);
      float amax = 0.f;
      for (int64_t i = a; i < b; ++i) amax = std::max(amax, std::fabs(w[r * k + i]));
      const float s = amax / 127.f;
      scales[r * groups + g] = s;
      for (int64_t i = a; i < b; ++i) {
        q[r * k + i] = static_cast<int8_t>(s > 0 ? std::nearbyint(w[r * k + i] / s) : 0.f);
      }
    }
  }
}

struct Entry {
  std::string dtype;
  std::vector<int64_t> shape;
  std::string bytes;
};

void write_safetensors(const fs::path& path, const std::map<std::string, Entry>& tensors) {
  json header = json::object();
  std::string body;
  for (const auto& [name, e] : tensors) {  // in name order; F32 data may land unaligned
    header[name] = {{"dtype", e.dtype},
                    {"shape", e.shape},
                    {"data_offsets", {body.size(), body.size() + e.bytes.size()}}};
    body += e.bytes;
  }
  const std::string text = header.dump();
  const uint64_t len = text.size();
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(&len), 8);
  f << text << body;
}

// What the independent writer should do differently (bad-input tests).
struct Mutation {
  std::string drop;         // omit this tensor
  std::string bf16_scales;  // store these scales as BF16
  std::string minus128;     // put a -128 into this int8 weight
  json quantization_config = {
      {"quant_method", "flamingo_int8"}, {"bits", 8}, {"group_size", 64}, {"symmetric", true}};
  bool write_config = true;
};

// The golden float32 checkpoint as one int8 shard, from the format description only.
std::string write_independent(const fs::path& dir, const Mutation& mut = {}) {
  const std::string src = golden_path("model");
  fs::create_directories(dir);
  const Checkpoint ckpt = Checkpoint::open(src);
  std::map<std::string, Entry> tensors;
  for (const std::string& name : ckpt.names()) {
    const TensorView& v = *ckpt.find(name);
    const std::string raw(reinterpret_cast<const char*>(v.data), v.nbytes);
    const bool linear =
        v.shape.size() == 2 && name.ends_with(".weight") && name.find("embed") == std::string::npos;
    if (!linear) {
      tensors[name] = {stored_dtype_name(v.dtype), v.shape, raw};
      continue;
    }
    if (v.dtype != StoredDtype::kF32) throw std::runtime_error(name + ": expected F32");
    std::vector<float> w(v.numel());
    std::memcpy(w.data(), v.data, v.nbytes);
    std::vector<int8_t> q;
    std::vector<float> s;
    quantize_rows(w.data(), v.shape[0], v.shape[1], q, s);
    if (name == mut.minus128) q[0] = -128;
    tensors[name] = {"I8", v.shape, std::string(reinterpret_cast<const char*>(q.data()), q.size())};
    const std::string sname = name + "_scale";
    Entry se{"F32",
             {v.shape[0], (v.shape[1] + 63) / 64},
             std::string(reinterpret_cast<const char*>(s.data()), s.size() * 4)};
    if (sname == mut.bf16_scales) {
      se.dtype = "BF16";
      se.bytes.resize(se.bytes.size() / 2);
    }
    tensors[sname] = se;
  }
  if (!mut.drop.empty()) tensors.erase(mut.drop);
  write_safetensors(dir / "model.safetensors", tensors);
  for (const auto& e : fs::directory_iterator(src)) {
    const std::string f = e.path().filename().string();
    if (!f.ends_with(".safetensors") && !f.ends_with(".json")) fs::copy_file(e.path(), dir / f);
    if (f == "added_tokens.json" || f == "generation_config.json" ||
        f == "preprocessor_config.json" || f == "special_tokens_map.json" ||
        f == "tokenizer_config.json") {
      fs::copy_file(e.path(), dir / f);
    }
  }
  json cfg = json::parse(std::ifstream(fs::path(src) / "config.json"));
  if (mut.write_config) cfg["quantization_config"] = mut.quantization_config;
  std::ofstream(dir / "config.json") << cfg.dump(2);
  return dir.string();
}

TEST(Int8Checkpoint, IndependentlyWrittenCheckpointLoadsToTheSameBits) {
  TempDir dir("flamingo_int8ind");
  const auto m = load(write_independent(dir.path() / "q"), "float32");
  ASSERT_EQ(m->weight_type(), kernels::WeightType::kInt8);
  const FlamingoModel& at_load = golden_model("model", "float32", "int8");
  for (const std::string& c : golden_cases()) expect_same_logits(*m, at_load, c);
}

TEST(Int8Checkpoint, BadQuantizationConfigsNameTheKey) {
  TempDir dir("flamingo_int8bad");
  struct Case {
    std::string key;
    json value;
    std::string expect;
  };
  for (const Case& c : {Case{"quant_method", "gptq", "quantization_config.quant_method"},
                        Case{"bits", 4, "quantization_config.bits"},
                        Case{"group_size", 128, "quantization_config.group_size"},
                        Case{"symmetric", false, "quantization_config.symmetric"},
                        Case{"bits", "8", "quantization_config.bits"}}) {
    Mutation mut;
    mut.quantization_config[c.key] = c.value;
    const std::string d = write_independent(dir.path() / (c.key + c.value.dump()), mut);
    const std::string e = error_of([&] { load(d, "float32"); });
    EXPECT_NE(e.find(c.expect), std::string::npos) << e;
    EXPECT_NE(e.find("config.json"), std::string::npos) << e;
  }
}

TEST(Int8Checkpoint, BadTensorsNameTheTensor) {
  TempDir dir("flamingo_int8bad");
  const std::string w = "model.layers.0.mlp.down_proj.weight";
  {
    Mutation mut;
    mut.drop = w + "_scale";
    const std::string e =
        error_of([&] { load(write_independent(dir.path() / "a", mut), "float32"); });
    EXPECT_NE(e.find("missing tensor '" + w + "_scale'"), std::string::npos) << e;
  }
  {
    Mutation mut;
    mut.bf16_scales = w + "_scale";
    const std::string e =
        error_of([&] { load(write_independent(dir.path() / "b", mut), "float32"); });
    EXPECT_NE(e.find(w + "_scale' has dtype BF16, expected F32"), std::string::npos) << e;
  }
  {
    Mutation mut;
    mut.minus128 = w;
    const std::string e =
        error_of([&] { load(write_independent(dir.path() / "c", mut), "float32"); });
    EXPECT_NE(e.find(w), std::string::npos) << e;
    EXPECT_NE(e.find("[-127, 127]"), std::string::npos) << e;
  }
  {
    Mutation mut;
    mut.write_config = false;  // int8 tensors without a quantization_config
    const std::string e =
        error_of([&] { load(write_independent(dir.path() / "d", mut), "float32"); });
    EXPECT_NE(e.find("quantization_config"), std::string::npos) << e;
  }
  {
    const std::string d = write_independent(dir.path() / "e");
    fs::resize_file(fs::path(d) / "model.safetensors",
                    fs::file_size(fs::path(d) / "model.safetensors") - 4);
    const std::string e = error_of([&] { load(d, "float32"); });
    EXPECT_NE(e.find("model.safetensors"), std::string::npos) << e;
  }
}

TEST(Int8Checkpoint, WrongFlagsAndFoldersAreErrors) {
  TempDir dir("flamingo_int8flags");
  const std::string out = (dir.path() / "q").string();
  write_int8_checkpoint(golden_path("model_bf16"), out);
  std::string e = error_of([&] { load(out, "float32", "bfloat16"); });
  EXPECT_NE(e.find("--weights bfloat16"), std::string::npos) << e;
  EXPECT_NE(e.find("int8 checkpoint"), std::string::npos) << e;
  e = error_of([&] { write_int8_checkpoint(out, (dir.path() / "again").string()); });
  EXPECT_NE(e.find("already an int8 checkpoint"), std::string::npos) << e;
  e = error_of([&] { write_int8_checkpoint(golden_path("model_bf16"), out); });
  EXPECT_NE(e.find("not an empty folder"), std::string::npos) << e;
  e = error_of([&] { write_int8_checkpoint((dir.path() / "nothing").string(), out + "2"); });
  EXPECT_NE(e.find("config.json"), std::string::npos) << e;
}

}  // namespace
}  // namespace flamingo
