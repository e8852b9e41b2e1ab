// ModelConfig: the golden config.json checked field by field against model_config_full.json
// (every attribute as transformers v4.44.2 holds it, defaults included); the IdeficsConfig /
// IdeficsVisionConfig / IdeficsPerceiverConfig class defaults (hand-copied from transformers
// v4.44.2 configuration_idefics.py) for missing keys; present keys winning; the vision
// "hidden_size" alias; nested model_type variants; one-line errors that name the key and the
// value found; and the cross-layer / image-token helpers against hand-written tables.
#include "model/config.h"

#include <gtest/gtest.h>

#include <fstream>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "model/error.h"
#include "tests/common/process.h"

#ifndef FLAMINGO_GOLDEN_DIR
#error "FLAMINGO_GOLDEN_DIR must name tests/golden/idefics-tiny"
#endif

namespace flamingo {
namespace {

using nlohmann::json;

constexpr char kSource[] = "unit-config.json";

ModelConfig parse(const std::string& text) { return parse_model_config(text, kSource); }

json read_json(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << "cannot read " << path;
  return json::parse(in);
}

// Parses `text`, expects a flamingo::Error whose message is one line, names the source and
// contains every string in `needles`; returns the message.
std::string expect_error(const std::string& text, std::initializer_list<std::string> needles) {
  try {
    parse(text);
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "multi-line message: " << msg;
    EXPECT_NE(msg.find(kSource), std::string::npos) << "source not named: " << msg;
    for (const std::string& n : needles) {
      EXPECT_NE(msg.find(n), std::string::npos) << "'" << n << "' missing from: " << msg;
    }
    return msg;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected flamingo::Error, got another exception: " << e.what();
    return {};
  }
  ADD_FAILURE() << "expected flamingo::Error for: " << text;
  return {};
}

// ---------------------------------------------------------------------------------------------
// Golden checkpoint config.

TEST(ModelConfig, GoldenConfigOmitsTheVisionDefaults) {
  // The golden config.json must really leave these out, or the next test proves nothing about
  // defaults.
  const json raw = read_json(FLAMINGO_GOLDEN_DIR "/model/config.json");
  const json& v = raw.at("vision_config");
  for (const char* key : {"patch_size", "hidden_act", "layer_norm_eps", "num_channels"}) {
    EXPECT_FALSE(v.contains(key)) << key;
  }
}

TEST(ModelConfig, GoldenConfigMatchesFullConfigJson) {
  const ModelConfig c = load_model_config(FLAMINGO_GOLDEN_DIR "/model");
  const json full = read_json(FLAMINGO_GOLDEN_DIR "/model_config_full.json");

  EXPECT_EQ(c.model_type, full.at("model_type").get<std::string>());
  EXPECT_EQ(c.vocab_size, full.at("vocab_size").get<int64_t>());
  EXPECT_EQ(c.additional_vocab_size, full.at("additional_vocab_size").get<int64_t>());
  EXPECT_EQ(c.hidden_size, full.at("hidden_size").get<int64_t>());
  EXPECT_EQ(c.intermediate_size, full.at("intermediate_size").get<int64_t>());
  EXPECT_EQ(c.num_hidden_layers, full.at("num_hidden_layers").get<int64_t>());
  EXPECT_EQ(c.num_attention_heads, full.at("num_attention_heads").get<int64_t>());
  EXPECT_EQ(c.hidden_act, full.at("hidden_act").get<std::string>());
  EXPECT_EQ(c.rms_norm_eps, full.at("rms_norm_eps").get<double>());
  EXPECT_EQ(c.max_position_embeddings, full.at("max_position_embeddings").get<int64_t>());
  EXPECT_TRUE(c.max_position_embeddings_in_config);  // the golden config.json has the key
  EXPECT_EQ(c.cross_layer_interval, full.at("cross_layer_interval").get<int64_t>());
  EXPECT_EQ(c.qk_layer_norms, full.at("qk_layer_norms").get<bool>());
  EXPECT_EQ(c.alpha_type, full.at("alpha_type").get<std::string>());
  EXPECT_EQ(c.tie_word_embeddings, full.at("tie_word_embeddings").get<bool>());
  EXPECT_EQ(c.use_resampler, full.at("use_resampler").get<bool>());
  EXPECT_EQ(c.pad_token_id, full.at("pad_token_id").get<int64_t>());
  EXPECT_EQ(c.bos_token_id, full.at("bos_token_id").get<int64_t>());
  EXPECT_EQ(c.eos_token_id, full.at("eos_token_id").get<int64_t>());
  EXPECT_EQ(c.torch_dtype, full.at("torch_dtype").get<std::string>());
  // Not config attributes: IdeficsEmbedding's base and the perceiver LayerNorm eps are fixed
  // in transformers' code (README: rotary base 10000, perceiver LayerNorm eps 1e-5).
  EXPECT_EQ(c.rope_theta, 10000.0);
  EXPECT_EQ(c.perceiver.layer_norm_eps, 1e-5);

  const json& fv = full.at("vision_config");
  EXPECT_EQ(c.vision.embed_dim, fv.at("embed_dim").get<int64_t>());
  EXPECT_EQ(c.vision.image_size, fv.at("image_size").get<int64_t>());
  EXPECT_EQ(c.vision.patch_size, fv.at("patch_size").get<int64_t>());
  EXPECT_EQ(c.vision.num_hidden_layers, fv.at("num_hidden_layers").get<int64_t>());
  EXPECT_EQ(c.vision.num_attention_heads, fv.at("num_attention_heads").get<int64_t>());
  EXPECT_EQ(c.vision.intermediate_size, fv.at("intermediate_size").get<int64_t>());
  EXPECT_EQ(c.vision.num_channels, fv.at("num_channels").get<int64_t>());
  EXPECT_EQ(c.vision.layer_norm_eps, fv.at("layer_norm_eps").get<double>());
  EXPECT_EQ(c.vision.hidden_act, fv.at("hidden_act").get<std::string>());

  const json& fp = full.at("perceiver_config");
  EXPECT_EQ(c.perceiver.resampler_n_latents, fp.at("resampler_n_latents").get<int64_t>());
  EXPECT_EQ(c.perceiver.resampler_depth, fp.at("resampler_depth").get<int64_t>());
  EXPECT_EQ(c.perceiver.resampler_n_heads, fp.at("resampler_n_heads").get<int64_t>());
  EXPECT_EQ(c.perceiver.resampler_head_dim, fp.at("resampler_head_dim").get<int64_t>());
  EXPECT_EQ(c.perceiver.qk_layer_norms_perceiver, fp.at("qk_layer_norms_perceiver").get<bool>());

  // Hand-checked values from the golden README (so a wrong full-config read is caught too).
  EXPECT_EQ(c.vision.patch_size, 14);
  EXPECT_EQ(c.vision.hidden_act, "gelu");
  EXPECT_EQ(c.vision.layer_norm_eps, 1e-5);
  EXPECT_EQ(c.vision.num_channels, 3);
  EXPECT_EQ(c.head_dim(), 12);
  EXPECT_EQ(c.total_vocab(), 402);
  EXPECT_EQ(c.vision.head_dim(), 12);
  EXPECT_EQ(c.vision.num_patches(), 9);     // 3 x 3
  EXPECT_EQ(c.vision.num_positions(), 10);  // + CLS
  EXPECT_EQ(c.image_tokens(), 16);          // resampler latents
  EXPECT_EQ(c.num_cross_layers(), 3);       // one before every decoder layer
}

TEST(ModelConfig, GoldenBf16ConfigDiffersOnlyInTorchDtype) {
  const ModelConfig f = load_model_config(FLAMINGO_GOLDEN_DIR "/model");
  const ModelConfig b = load_model_config(FLAMINGO_GOLDEN_DIR "/model_bf16");
  EXPECT_EQ(f.torch_dtype, "float32");
  EXPECT_EQ(b.torch_dtype, "bfloat16");
  EXPECT_EQ(b.hidden_size, f.hidden_size);
  EXPECT_EQ(b.total_vocab(), f.total_vocab());
  EXPECT_EQ(b.vision.patch_size, f.vision.patch_size);
  EXPECT_EQ(b.perceiver.resampler_n_latents, f.perceiver.resampler_n_latents);
}

// ---------------------------------------------------------------------------------------------
// Class defaults (transformers v4.44.2 configuration_idefics.py, copied by hand).

void expect_class_defaults(const ModelConfig& c) {
  EXPECT_EQ(c.model_type, "idefics");
  EXPECT_EQ(c.vocab_size, 32000);
  EXPECT_EQ(c.additional_vocab_size, 0);
  EXPECT_EQ(c.hidden_size, 4096);
  EXPECT_EQ(c.intermediate_size, 11008);
  EXPECT_EQ(c.num_hidden_layers, 32);
  EXPECT_EQ(c.num_attention_heads, 32);
  EXPECT_EQ(c.hidden_act, "silu");
  EXPECT_EQ(c.rms_norm_eps, 1e-6);
  EXPECT_EQ(c.rope_theta, 10000.0);
  EXPECT_EQ(c.max_position_embeddings, 2048);
  EXPECT_FALSE(c.max_position_embeddings_in_config);
  EXPECT_EQ(c.cross_layer_interval, 1);
  EXPECT_FALSE(c.qk_layer_norms);
  EXPECT_EQ(c.alpha_type, "float");
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_FALSE(c.use_resampler);
  EXPECT_EQ(c.pad_token_id, 0);
  EXPECT_EQ(c.bos_token_id, 1);
  EXPECT_EQ(c.eos_token_id, 2);
  EXPECT_EQ(c.torch_dtype, "");

  EXPECT_EQ(c.vision.embed_dim, 768);
  EXPECT_EQ(c.vision.image_size, 224);
  EXPECT_EQ(c.vision.patch_size, 14);
  EXPECT_EQ(c.vision.num_hidden_layers, 32);
  EXPECT_EQ(c.vision.num_attention_heads, 16);
  EXPECT_EQ(c.vision.intermediate_size, 5120);
  EXPECT_EQ(c.vision.num_channels, 3);
  EXPECT_EQ(c.vision.layer_norm_eps, 1e-5);
  EXPECT_EQ(c.vision.hidden_act, "gelu");

  EXPECT_EQ(c.perceiver.resampler_n_latents, 64);
  EXPECT_EQ(c.perceiver.resampler_depth, 6);
  EXPECT_EQ(c.perceiver.resampler_n_heads, 16);
  EXPECT_EQ(c.perceiver.resampler_head_dim, 96);
  EXPECT_FALSE(c.perceiver.qk_layer_norms_perceiver);
  EXPECT_EQ(c.perceiver.layer_norm_eps, 1e-5);

  // Derived, by hand: 4096 / 32 = 128; 224 / 14 = 16 -> 256 patches + CLS.
  EXPECT_EQ(c.head_dim(), 128);
  EXPECT_EQ(c.total_vocab(), 32000);
  EXPECT_EQ(c.vision.head_dim(), 48);
  EXPECT_EQ(c.vision.num_patches(), 256);
  EXPECT_EQ(c.vision.num_positions(), 257);
  EXPECT_EQ(c.image_tokens(), 257);  // no resampler: every vision token
  EXPECT_EQ(c.num_cross_layers(), 32);
}

TEST(ModelConfig, OnlyModelTypeGivesClassDefaults) {
  SCOPED_TRACE("model_type only");
  expect_class_defaults(parse(R"({"model_type": "idefics"})"));
}

TEST(ModelConfig, EmptyOrNullSubConfigsGiveClassDefaults) {
  {
    SCOPED_TRACE("empty sub-configs");
    expect_class_defaults(
        parse(R"({"model_type": "idefics", "vision_config": {}, "perceiver_config": {}})"));
  }
  {
    SCOPED_TRACE("null sub-configs and null values");
    expect_class_defaults(parse(R"({"model_type": "idefics", "vision_config": null,
        "perceiver_config": null, "hidden_size": null, "torch_dtype": null})"));
  }
}

TEST(ModelConfig, IgnoredKeysAreAccepted) {
  // Keys the modeling code ignores appear in real hub configs; they must not disturb parsing.
  expect_class_defaults(parse(R"({"model_type": "idefics", "word_embed_proj_dim": 7,
      "freeze_text_module_exceptions": [], "dropout": 0.1, "use_cache": true,
      "cross_layer_activation_function": "swiglu", "architectures": ["X"]})"));
}

TEST(ModelConfig, PresentKeysWin) {
  const ModelConfig c = parse(R"({
    "model_type": "idefics",
    "vocab_size": 1000, "additional_vocab_size": 3, "hidden_size": 64,
    "intermediate_size": 200, "num_hidden_layers": 6, "num_attention_heads": 8,
    "hidden_act": "silu", "rms_norm_eps": 1e-5, "max_position_embeddings": 4096,
    "cross_layer_interval": 2, "qk_layer_norms": true, "alpha_type": "vector",
    "tie_word_embeddings": true, "use_resampler": true, "pad_token_id": 5,
    "bos_token_id": 6, "eos_token_id": 7, "torch_dtype": "bfloat16",
    "vision_config": {"model_type": "idefics_vision", "embed_dim": 40, "image_size": 60,
      "patch_size": 10, "num_hidden_layers": 3, "num_attention_heads": 4,
      "intermediate_size": 80, "num_channels": 3, "layer_norm_eps": 1e-6,
      "hidden_act": "quick_gelu"},
    "perceiver_config": {"model_type": "idefics_perciever", "resampler_n_latents": 8,
      "resampler_depth": 1, "resampler_n_heads": 3, "resampler_head_dim": 5,
      "qk_layer_norms_perceiver": true}
  })");
  EXPECT_EQ(c.vocab_size, 1000);
  EXPECT_EQ(c.additional_vocab_size, 3);
  EXPECT_EQ(c.total_vocab(), 1003);
  EXPECT_EQ(c.hidden_size, 64);
  EXPECT_EQ(c.intermediate_size, 200);
  EXPECT_EQ(c.num_hidden_layers, 6);
  EXPECT_EQ(c.num_attention_heads, 8);
  EXPECT_EQ(c.head_dim(), 8);
  EXPECT_EQ(c.hidden_act, "silu");
  EXPECT_EQ(c.rms_norm_eps, 1e-5);
  EXPECT_EQ(c.max_position_embeddings, 4096);
  EXPECT_TRUE(c.max_position_embeddings_in_config);
  EXPECT_EQ(c.cross_layer_interval, 2);
  EXPECT_TRUE(c.qk_layer_norms);
  EXPECT_EQ(c.alpha_type, "vector");
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_TRUE(c.use_resampler);
  EXPECT_EQ(c.pad_token_id, 5);
  EXPECT_EQ(c.bos_token_id, 6);
  EXPECT_EQ(c.eos_token_id, 7);
  EXPECT_EQ(c.torch_dtype, "bfloat16");

  EXPECT_EQ(c.vision.embed_dim, 40);
  EXPECT_EQ(c.vision.image_size, 60);
  EXPECT_EQ(c.vision.patch_size, 10);
  EXPECT_EQ(c.vision.num_hidden_layers, 3);
  EXPECT_EQ(c.vision.num_attention_heads, 4);
  EXPECT_EQ(c.vision.intermediate_size, 80);
  EXPECT_EQ(c.vision.layer_norm_eps, 1e-6);
  EXPECT_EQ(c.vision.hidden_act, "quick_gelu");
  EXPECT_EQ(c.vision.head_dim(), 10);
  EXPECT_EQ(c.vision.num_patches(), 36);  // (60 / 10)^2
  EXPECT_EQ(c.vision.num_positions(), 37);

  EXPECT_EQ(c.perceiver.resampler_n_latents, 8);
  EXPECT_EQ(c.perceiver.resampler_depth, 1);
  EXPECT_EQ(c.perceiver.resampler_n_heads, 3);
  EXPECT_EQ(c.perceiver.resampler_head_dim, 5);
  EXPECT_TRUE(c.perceiver.qk_layer_norms_perceiver);

  EXPECT_EQ(c.image_tokens(), 8);
  EXPECT_EQ(c.num_cross_layers(), 3);  // layers 0, 2, 4
}

TEST(ModelConfig, PartialSubConfigKeepsOtherDefaults) {
  const ModelConfig c = parse(R"({"model_type": "idefics", "vision_config": {"image_size": 28},
                "perceiver_config": {"resampler_depth": 2}})");
  EXPECT_EQ(c.vision.image_size, 28);
  EXPECT_EQ(c.vision.patch_size, 14);
  EXPECT_EQ(c.vision.embed_dim, 768);
  EXPECT_EQ(c.vision.num_positions(), 5);  // 2 x 2 + CLS
  EXPECT_EQ(c.perceiver.resampler_depth, 2);
  EXPECT_EQ(c.perceiver.resampler_n_latents, 64);
  EXPECT_EQ(c.perceiver.resampler_head_dim, 96);
}

TEST(ModelConfig, EveryVisionActivationIsAccepted) {
  for (const char* act : {"gelu", "quick_gelu", "gelu_new", "gelu_pytorch_tanh"}) {
    const ModelConfig c = parse(std::string(R"({"model_type": "idefics", "vision_config":
        {"hidden_act": ")") + act +
                                R"("}})");
    EXPECT_EQ(c.vision.hidden_act, act);
  }
}

TEST(ModelConfig, MaxPositionEmbeddingsInConfigFlag) {
  {
    const ModelConfig c = parse(R"({"model_type": "idefics"})");
    EXPECT_FALSE(c.max_position_embeddings_in_config);
    EXPECT_EQ(c.max_position_embeddings, 2048);
  }
  {
    const ModelConfig c = parse(R"({"model_type": "idefics", "max_position_embeddings": null})");
    EXPECT_FALSE(c.max_position_embeddings_in_config);
    EXPECT_EQ(c.max_position_embeddings, 2048);
  }
  {
    // Present with the default value: still "in config".
    const ModelConfig c = parse(R"({"model_type": "idefics", "max_position_embeddings": 2048})");
    EXPECT_TRUE(c.max_position_embeddings_in_config);
    EXPECT_EQ(c.max_position_embeddings, 2048);
  }
  {
    const ModelConfig c = parse(R"({"model_type": "idefics", "max_position_embeddings": 77})");
    EXPECT_TRUE(c.max_position_embeddings_in_config);
    EXPECT_EQ(c.max_position_embeddings, 77);
  }
}

TEST(ModelConfig, VisionHiddenSizeIsAnAliasOfEmbedDim) {
  // IdeficsVisionConfig.attribute_map = {"hidden_size": "embed_dim"}.
  const ModelConfig c = parse(
      R"({"model_type": "idefics", "vision_config": {"hidden_size": 32, "num_attention_heads": 4}})");
  EXPECT_EQ(c.vision.embed_dim, 32);
  EXPECT_EQ(c.vision.head_dim(), 8);
  EXPECT_EQ(c.hidden_size, 4096);  // the text width is untouched
}

TEST(ModelConfig, NestedModelTypeVariantsAreAccepted) {
  for (const char* vt : {"idefics", "idefics_vision"}) {
    for (const char* pt : {"idefics", "idefics_perciever", "idefics_perceiver"}) {
      SCOPED_TRACE(std::string(vt) + " / " + pt);
      const ModelConfig c = parse(std::string(R"({"model_type": "idefics",
          "vision_config": {"model_type": ")") +
                                  vt + R"(", "embed_dim": 24, "num_attention_heads": 2},
          "perceiver_config": {"model_type": ")" +
                                  pt + R"(", "resampler_n_latents": 4}})");
      EXPECT_EQ(c.vision.embed_dim, 24);
      EXPECT_EQ(c.perceiver.resampler_n_latents, 4);
    }
  }
}

TEST(ModelConfig, LoadModelConfigReadsTheFolder) {
  testing::TempDir dir("flamingo_config_test");
  {
    std::ofstream out(dir.file("config.json"));
    out << R"({"model_type": "idefics", "hidden_size": 96, "num_attention_heads": 4})";
  }
  const ModelConfig c = load_model_config(dir.path().string());
  EXPECT_EQ(c.hidden_size, 96);
  EXPECT_EQ(c.head_dim(), 24);
}

// ---------------------------------------------------------------------------------------------
// Errors: one line, naming the key and the value found.

TEST(ModelConfigErrors, UnknownModelType) {
  expect_error(R"({"model_type": "llama"})", {"model_type", "llama", "idefics"});
}

TEST(ModelConfigErrors, MissingOrNonStringModelType) {
  expect_error(R"({"hidden_size": 48})", {"model_type"});
  expect_error(R"({"model_type": 5})", {"model_type"});
}

TEST(ModelConfigErrors, WrongValueTypes) {
  expect_error(R"({"model_type": "idefics", "hidden_size": "big"})", {"hidden_size", "\"big\""});
  expect_error(R"({"model_type": "idefics", "hidden_size": 48.5})", {"hidden_size", "48.5"});
  expect_error(R"({"model_type": "idefics", "num_hidden_layers": true})",
               {"num_hidden_layers", "true"});
  expect_error(R"({"model_type": "idefics", "rms_norm_eps": "tiny"})",
               {"rms_norm_eps", "\"tiny\""});
  expect_error(R"({"model_type": "idefics", "qk_layer_norms": 1})", {"qk_layer_norms", "1"});
  expect_error(R"({"model_type": "idefics", "alpha_type": 3})", {"alpha_type", "3"});
  expect_error(R"({"model_type": "idefics", "vision_config": {"patch_size": [14]}})",
               {"vision_config.patch_size", "[14]"});
  expect_error(R"({"model_type": "idefics", "perceiver_config": {"resampler_depth": "2"}})",
               {"perceiver_config.resampler_depth", "\"2\""});
  expect_error(R"({"model_type": "idefics", "vision_config": 5})", {"vision_config", "5"});
  expect_error(R"({"model_type": "idefics", "perceiver_config": "x"})",
               {"perceiver_config", "\"x\""});
}

TEST(ModelConfigErrors, HiddenSizeNotDivisibleIntoHeads) {
  expect_error(R"({"model_type": "idefics", "hidden_size": 50, "num_attention_heads": 4})",
               {"hidden_size", "50"});
}

TEST(ModelConfigErrors, OddHeadDim) {
  // 36 / 4 = 9: rotary needs an even head_dim.
  expect_error(R"({"model_type": "idefics", "hidden_size": 36, "num_attention_heads": 4})",
               {"hidden_size", "36"});
}

TEST(ModelConfigErrors, NonPositiveSizesAreRejectedBeforeDividing) {
  // A zero divisor must be an Error, not a SIGFPE.
  expect_error(R"({"model_type": "idefics", "num_attention_heads": 0})",
               {"num_attention_heads", "0"});
  expect_error(R"({"model_type": "idefics", "cross_layer_interval": 0})",
               {"cross_layer_interval", "0"});
  expect_error(R"({"model_type": "idefics", "hidden_size": -8})", {"hidden_size", "-8"});
  expect_error(R"({"model_type": "idefics", "vision_config": {"num_attention_heads": 0}})",
               {"vision_config.num_attention_heads", "0"});
  expect_error(R"({"model_type": "idefics", "vision_config": {"patch_size": 0}})",
               {"vision_config.patch_size", "0"});
  expect_error(R"({"model_type": "idefics", "perceiver_config": {"resampler_n_latents": 0}})",
               {"perceiver_config.resampler_n_latents", "0"});
}

TEST(ModelConfigErrors, VisionShapes) {
  expect_error(R"({"model_type": "idefics", "vision_config": {"image_size": 43}})",
               {"vision_config.image_size", "43", "14"});
  expect_error(
      R"({"model_type": "idefics", "vision_config": {"embed_dim": 30, "num_attention_heads": 4}})",
      {"vision_config.embed_dim", "30"});
  expect_error(R"({"model_type": "idefics", "vision_config": {"num_channels": 4}})",
               {"vision_config.num_channels", "4"});
  expect_error(R"({"model_type": "idefics", "vision_config": {"hidden_act": "relu"}})",
               {"vision_config.hidden_act", "relu"});
}

TEST(ModelConfigErrors, UnsupportedTextChoices) {
  expect_error(R"({"model_type": "idefics", "alpha_type": "matrix"})", {"alpha_type", "matrix"});
  expect_error(R"({"model_type": "idefics", "hidden_act": "gelu"})", {"hidden_act", "gelu"});
  expect_error(R"({"model_type": "idefics", "cross_layer_activation_function": "gelu"})",
               {"cross_layer_activation_function", "gelu"});
}

TEST(ModelConfigErrors, NegativeAdditionalVocab) {
  expect_error(R"({"model_type": "idefics", "additional_vocab_size": -1})",
               {"additional_vocab_size", "-1"});
}

TEST(ModelConfigErrors, NestedModelTypeRejected) {
  expect_error(R"({"model_type": "idefics", "vision_config": {"model_type": "clip_vision_model"}})",
               {"vision_config.model_type", "clip_vision_model"});
  expect_error(R"({"model_type": "idefics", "perceiver_config": {"model_type": "idefics_vision"}})",
               {"perceiver_config.model_type", "idefics_vision"});
}

TEST(ModelConfigErrors, MalformedJson) {
  expect_error("{\"model_type\": \"idefics\",\n \"hidden_size\": }", {"malformed JSON"});
  expect_error("", {"malformed JSON"});
  expect_error(R"(["idefics"])", {"object"});
}

TEST(ModelConfigErrors, MissingConfigFile) {
  testing::TempDir dir("flamingo_config_test");
  try {
    load_model_config(dir.path().string());
    ADD_FAILURE() << "expected Error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(dir.file("config.json")), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

TEST(ModelConfigErrors, LoadErrorsNameTheFile) {
  testing::TempDir dir("flamingo_config_test");
  {
    std::ofstream out(dir.file("config.json"));
    out << R"({"model_type": "idefics", "hidden_size": "big"})";
  }
  try {
    load_model_config(dir.path().string());
    ADD_FAILURE() << "expected Error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(dir.file("config.json")), std::string::npos) << msg;
    EXPECT_NE(msg.find("hidden_size"), std::string::npos) << msg;
    EXPECT_NE(msg.find("\"big\""), std::string::npos) << msg;
  }
}

// ---------------------------------------------------------------------------------------------
// Helpers. transformers runs gated cross-attention layer i / interval before decoder layer i
// when i % interval == 0; the expected layer lists below are written out by hand.

struct CrossCase {
  int64_t interval;
  int64_t layers;
  std::vector<int64_t> cross_before;  // decoder layers preceded by a gated layer
};

TEST(ModelConfigHelpers, CrossLayerPlacement) {
  const std::vector<CrossCase> cases = {
      {1, 3, {0, 1, 2}},
      {1, 4, {0, 1, 2, 3}},
      {1, 16, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}},
      {2, 3, {0, 2}},
      {2, 4, {0, 2}},
      {2, 16, {0, 2, 4, 6, 8, 10, 12, 14}},
      {4, 3, {0}},
      {4, 4, {0}},
      {4, 16, {0, 4, 8, 12}},
  };
  for (const CrossCase& k : cases) {
    SCOPED_TRACE("interval " + std::to_string(k.interval) + ", layers " + std::to_string(k.layers));
    // Through the parser, so the keys are wired to the right fields.
    const ModelConfig c = parse(R"({"model_type": "idefics", "hidden_size": 64,
        "num_attention_heads": 4, "num_hidden_layers": )" +
                                std::to_string(k.layers) + R"(, "cross_layer_interval": )" +
                                std::to_string(k.interval) + "}");
    std::vector<int64_t> got;
    for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
      if (c.has_cross_layer(i)) got.push_back(i);
    }
    EXPECT_EQ(got, k.cross_before);
    // One gated layer per place it runs.
    EXPECT_EQ(c.num_cross_layers(), static_cast<int64_t>(k.cross_before.size()));
    // Gated layer j = i / interval runs before decoder layer i: 0, 1, 2, ... in order.
    for (size_t j = 0; j < got.size(); ++j)
      EXPECT_EQ(got[j] / c.cross_layer_interval, static_cast<int64_t>(j));
    if (k.layers % k.interval == 0) {
      // transformers builds num_hidden_layers // cross_layer_interval gated layers.
      EXPECT_EQ(c.num_cross_layers(), k.layers / k.interval);
    }
  }
}

TEST(ModelConfigHelpers, ImageTokens) {
  ModelConfig c;
  c.vision.image_size = 42;
  c.vision.patch_size = 14;
  c.perceiver.resampler_n_latents = 16;
  c.use_resampler = false;
  EXPECT_EQ(c.image_tokens(), 10);  // 3 x 3 patches + CLS
  c.use_resampler = true;
  EXPECT_EQ(c.image_tokens(), 16);
  c.vision.image_size = 224;
  EXPECT_EQ(c.image_tokens(), 16);  // the resampler output does not depend on the image grid
  c.use_resampler = false;
  EXPECT_EQ(c.image_tokens(), 257);  // 16 x 16 + CLS
}

}  // namespace
}  // namespace flamingo
