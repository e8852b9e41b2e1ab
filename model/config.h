// IDEFICS configuration as read from a checkpoint's config.json (model_type "idefics").
// save_pretrained leaves out every value equal to the class default of IdeficsConfig /
// IdeficsVisionConfig / IdeficsPerceiverConfig (transformers v4.44.2), so the defaults below
// are those classes' defaults, applied to missing keys only; present keys always win.
// Plain data, torch-free; immutable after load_model_config.
#pragma once

#include <cstdint>
#include <string>

namespace flamingo {

struct VisionConfig {       // IdeficsVisionConfig
  int64_t embed_dim = 768;  // also read from "hidden_size"
  int64_t image_size = 224;
  int64_t patch_size = 14;
  int64_t num_hidden_layers = 32;
  int64_t num_attention_heads = 16;
  int64_t intermediate_size = 5120;
  int64_t num_channels = 3;
  double layer_norm_eps = 1e-5;
  std::string hidden_act = "gelu";  // gelu | quick_gelu | gelu_new | gelu_pytorch_tanh

  int64_t head_dim() const { return embed_dim / num_attention_heads; }
  int64_t num_patches() const { return (image_size / patch_size) * (image_size / patch_size); }
  int64_t num_positions() const { return num_patches() + 1; }  // + CLS
};

struct PerceiverConfig {  // IdeficsPerceiverConfig
  int64_t resampler_n_latents = 64;
  int64_t resampler_depth = 6;
  int64_t resampler_n_heads = 16;
  int64_t resampler_head_dim = 96;
  bool qk_layer_norms_perceiver = false;
  double layer_norm_eps = 1e-5;  // fixed in the reference code
};

struct ModelConfig {  // IdeficsConfig
  std::string model_type = "idefics";
  int64_t vocab_size = 32000;
  int64_t additional_vocab_size = 0;
  int64_t hidden_size = 4096;
  int64_t intermediate_size = 11008;
  int64_t num_hidden_layers = 32;
  int64_t num_attention_heads = 32;
  std::string hidden_act = "silu";
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;             // IdeficsEmbedding's fixed base
  int64_t max_position_embeddings = 2048;  // from config.json when present, else 2048
  // The context a model is served with: `requested` when > 0, else max_position_embeddings.
  int64_t context_length(int64_t requested) const {
    return requested > 0 ? requested : max_position_embeddings;
  }
  bool max_position_embeddings_in_config = false;
  int64_t cross_layer_interval = 1;
  bool qk_layer_norms = false;
  std::string alpha_type = "float";  // float: alphas [1]; vector: alphas [1, 1, hidden]
  bool tie_word_embeddings = false;
  bool use_resampler = false;
  int64_t pad_token_id = 0;
  int64_t bos_token_id = 1;
  int64_t eos_token_id = 2;
  std::string torch_dtype;  // as stored ("float32", "bfloat16", ...); informational
  // config.json's quantization_config, written by `flamingo-cli quantize` (docs/QUANTIZATION.md):
  // the linear weights are stored int8 with float32 scales per row and group of 64 along K.
  bool int8_quantized = false;
  VisionConfig vision;
  PerceiverConfig perceiver;

  int64_t head_dim() const { return hidden_size / num_attention_heads; }
  int64_t total_vocab() const { return vocab_size + additional_vocab_size; }
  // Gated cross-attention runs before decoder layer i when this holds.
  bool has_cross_layer(int64_t i) const { return i % cross_layer_interval == 0; }
  int64_t num_cross_layers() const {
    return (num_hidden_layers + cross_layer_interval - 1) / cross_layer_interval;
  }
  // Rows per image that cross-attention reads: latents, or all vision tokens without resampler.
  int64_t image_tokens() const {
    return use_resampler ? perceiver.resampler_n_latents : vision.num_positions();
  }
};

// config.json's quantization_config of an int8 checkpoint (`flamingo-cli quantize`).
inline constexpr const char* kInt8QuantMethod = "flamingo_int8";
inline constexpr int64_t kInt8QuantGroup = 64;             // kernels::kInt8Group
inline constexpr const char* kInt8ScaleSuffix = "_scale";  // "X.weight" -> "X.weight_scale"

// Reads and validates <dir>/config.json. Throws Error naming the file, key, expected and found
// value for a missing file, malformed JSON, wrong types, unknown model_type or unsupported value.
ModelConfig load_model_config(const std::string& dir);

// Same, from JSON text (for tests); `source` names it in errors.
ModelConfig parse_model_config(const std::string& json_text, const std::string& source);

// config.json's model_type ("idefics", "clip", ...; "" when absent): which loader a folder
// needs. Throws Error for a missing file or malformed JSON.
std::string checkpoint_model_type(const std::string& dir);

}  // namespace flamingo
