#include "model/config.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "model/config_reader.h"
#include "model/error.h"

namespace flamingo {

VisionConfig parse_vision_config(const json& obj, const std::string& source, VisionConfig v,
                                 std::initializer_list<const char*> model_types) {
  check_model_type(obj, "vision_config.model_type", source, model_types);
  Reader r(obj, source, "vision_config.");
  r.get("hidden_size", v.embed_dim);
  r.get("embed_dim", v.embed_dim);
  r.get("image_size", v.image_size);
  r.get("patch_size", v.patch_size);
  r.get("num_hidden_layers", v.num_hidden_layers);
  r.get("num_attention_heads", v.num_attention_heads);
  r.get("intermediate_size", v.intermediate_size);
  r.get("num_channels", v.num_channels);
  r.get("layer_norm_eps", v.layer_norm_eps);
  r.get("hidden_act", v.hidden_act);
  r.positive("embed_dim", v.embed_dim);
  r.positive("image_size", v.image_size);
  r.positive("patch_size", v.patch_size);
  r.positive("num_hidden_layers", v.num_hidden_layers);
  r.positive("num_attention_heads", v.num_attention_heads);
  r.positive("intermediate_size", v.intermediate_size);
  if (v.num_channels != 3) r.fail("num_channels", "3", std::to_string(v.num_channels));
  if (v.embed_dim % v.num_attention_heads != 0) {
    r.fail("embed_dim",
           "a multiple of num_attention_heads " + std::to_string(v.num_attention_heads),
           std::to_string(v.embed_dim));
  }
  if (v.image_size % v.patch_size != 0) {
    r.fail("image_size", "a multiple of patch_size " + std::to_string(v.patch_size),
           std::to_string(v.image_size));
  }
  r.check_activation("hidden_act", v.hidden_act);
  return v;
}

namespace {

PerceiverConfig parse_perceiver(const json& obj, const std::string& source) {
  check_model_type(obj, "perceiver_config.model_type", source,
                   {"idefics", "idefics_perciever", "idefics_perceiver"});
  Reader r(obj, source, "perceiver_config.");
  PerceiverConfig p;
  r.get("resampler_n_latents", p.resampler_n_latents);
  r.get("resampler_depth", p.resampler_depth);
  r.get("resampler_n_heads", p.resampler_n_heads);
  r.get("resampler_head_dim", p.resampler_head_dim);
  r.get("qk_layer_norms_perceiver", p.qk_layer_norms_perceiver);
  r.positive("resampler_n_latents", p.resampler_n_latents);
  r.positive("resampler_depth", p.resampler_depth);
  r.positive("resampler_n_heads", p.resampler_n_heads);
  r.positive("resampler_head_dim", p.resampler_head_dim);
  return p;
}

// quantization_config: only the format `flamingo-cli quantize` writes is understood; another
// method (GPTQ, AWQ, bitsandbytes, ...) is an error rather than weights misread.
bool parse_quantization(const json& root, const std::string& source) {
  auto it = root.find("quantization_config");
  if (it == root.end() || it->is_null()) return false;
  Reader r(root, source, "");
  if (!it->is_object()) r.fail("quantization_config", "an object", it->dump());
  Reader q(*it, source, "quantization_config.");
  std::string method;
  int64_t bits = 0, group = 0;
  bool symmetric = true;
  q.get("quant_method", method);
  q.get("bits", bits);
  q.get("group_size", group);
  q.get("symmetric", symmetric);
  if (method != kInt8QuantMethod) {
    q.fail("quant_method",
           std::string("\"") + kInt8QuantMethod + "\" (written by flamingo-cli quantize)",
           it->contains("quant_method") ? (*it)["quant_method"].dump() : "nothing");
  }
  if (bits != 8) q.fail("bits", "8", std::to_string(bits));
  if (group != kInt8QuantGroup)
    q.fail("group_size", std::to_string(kInt8QuantGroup), std::to_string(group));
  if (!symmetric) q.fail("symmetric", "true", "false");
  return true;
}

}  // namespace

ModelConfig parse_model_config(const std::string& json_text, const std::string& source) {
  json root;
  try {
    root = json::parse(json_text);
  } catch (const json::exception& e) {
    throw Error(source + ": malformed JSON: " + e.what());
  }
  if (!root.is_object()) throw Error(source + ": expected a JSON object at the top level");
  ModelConfig c;
  {
    auto it = root.find("model_type");
    if (it == root.end() || !it->is_string()) {
      throw Error(source + ": missing key 'model_type' (expected \"idefics\")");
    }
  }
  check_model_type(root, "model_type", source, {"idefics"});
  Reader r(root, source, "");
  r.get("model_type", c.model_type);
  r.get("vocab_size", c.vocab_size);
  r.get("additional_vocab_size", c.additional_vocab_size);
  r.get("hidden_size", c.hidden_size);
  r.get("intermediate_size", c.intermediate_size);
  r.get("num_hidden_layers", c.num_hidden_layers);
  r.get("num_attention_heads", c.num_attention_heads);
  r.get("hidden_act", c.hidden_act);
  r.get("rms_norm_eps", c.rms_norm_eps);
  if (root.contains("max_position_embeddings") && !root["max_position_embeddings"].is_null()) {
    r.get("max_position_embeddings", c.max_position_embeddings);
    c.max_position_embeddings_in_config = true;
  }
  r.get("cross_layer_interval", c.cross_layer_interval);
  r.get("qk_layer_norms", c.qk_layer_norms);
  r.get("alpha_type", c.alpha_type);
  r.get("tie_word_embeddings", c.tie_word_embeddings);
  r.get("use_resampler", c.use_resampler);
  r.get("pad_token_id", c.pad_token_id);
  r.get("bos_token_id", c.bos_token_id);
  r.get("eos_token_id", c.eos_token_id);
  r.get("torch_dtype", c.torch_dtype);
  c.int8_quantized = parse_quantization(root, source);
  for (auto [key, value] :
       {std::pair{"vocab_size", c.vocab_size}, std::pair{"hidden_size", c.hidden_size},
        std::pair{"intermediate_size", c.intermediate_size},
        std::pair{"num_hidden_layers", c.num_hidden_layers},
        std::pair{"num_attention_heads", c.num_attention_heads},
        std::pair{"cross_layer_interval", c.cross_layer_interval},
        std::pair{"max_position_embeddings", c.max_position_embeddings}}) {
    r.positive(key, value);
  }
  if (c.additional_vocab_size < 0) {
    r.fail("additional_vocab_size", ">= 0", std::to_string(c.additional_vocab_size));
  }
  if (c.hidden_size % c.num_attention_heads != 0 || c.head_dim() % 2 != 0) {
    r.fail("hidden_size",
           "an even head_dim: a multiple of 2 * num_attention_heads (" +
               std::to_string(2 * c.num_attention_heads) + ")",
           std::to_string(c.hidden_size));
  }
  if (c.hidden_act != "silu") r.fail("hidden_act", "\"silu\"", "\"" + c.hidden_act + "\"");
  if (c.alpha_type != "float" && c.alpha_type != "vector") {
    r.fail("alpha_type", "\"float\" or \"vector\"", "\"" + c.alpha_type + "\"");
  }
  if (auto it = root.find("cross_layer_activation_function");
      it != root.end() && it->is_string() && it->get<std::string>() != "swiglu") {
    r.fail("cross_layer_activation_function", "\"swiglu\"", it->dump());
  }
  if (auto it = root.find("vision_config"); it != root.end() && !it->is_null()) {
    if (!it->is_object()) r.fail("vision_config", "an object", it->dump());
    c.vision = parse_vision_config(*it, source, VisionConfig{}, {"idefics", "idefics_vision"});
  }
  if (auto it = root.find("perceiver_config"); it != root.end() && !it->is_null()) {
    if (!it->is_object()) r.fail("perceiver_config", "an object", it->dump());
    c.perceiver = parse_perceiver(*it, source);
  }
  return c;
}

std::string read_config_json(const std::string& dir, const std::string& kind, std::string* path) {
  *path = (std::filesystem::path(dir) / "config.json").string();
  std::ifstream in(*path);
  if (!in) throw Error(*path + ": cannot read (is '" + dir + "' " + kind + " checkpoint folder?)");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

ModelConfig load_model_config(const std::string& dir) {
  std::string path;
  const std::string text = read_config_json(dir, "an IDEFICS", &path);
  return parse_model_config(text, path);
}

std::string checkpoint_model_type(const std::string& dir) {
  std::string path;
  const std::string text = read_config_json(dir, "a model", &path);
  const json root = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) throw Error(path + ": malformed JSON");
  auto it = root.is_object() ? root.find("model_type") : root.end();
  return it != root.end() && it->is_string() ? it->get<std::string>() : "";
}

}  // namespace flamingo
