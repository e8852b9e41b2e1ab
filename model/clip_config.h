// CLIP configuration as read from a checkpoint's config.json (model_type "clip", transformers'
// CLIPConfig with text_config and vision_config). Missing keys take the class defaults of
// CLIPTextConfig / CLIPVisionConfig / CLIPConfig (transformers v4.44.2); present keys win.
// Plain data, torch-free.
#pragma once

#include <cstdint>
#include <string>

#include "model/config.h"

namespace flamingo {

struct ClipTextConfig {  // CLIPTextConfig
  int64_t vocab_size = 49408;
  int64_t hidden_size = 512;
  int64_t intermediate_size = 2048;
  int64_t num_hidden_layers = 12;
  int64_t num_attention_heads = 8;
  int64_t max_position_embeddings = 77;
  double layer_norm_eps = 1e-5;
  std::string hidden_act = "quick_gelu";
  int64_t pad_token_id = 1;
  int64_t bos_token_id = 49406;
  // 2 (OpenAI's configs): the text is pooled at the argmax of its ids; else at the first
  // position holding this id (transformers v4.44's CLIPTextTransformer).
  int64_t eos_token_id = 49407;
};

struct ClipConfig {  // CLIPConfig
  ClipTextConfig text;
  VisionConfig vision = clip_vision_defaults();
  int64_t projection_dim = 512;
  double logit_scale_init_value = 2.6592;

  // CLIPVisionConfig's defaults (ViT-B/32).
  static VisionConfig clip_vision_defaults() {
    VisionConfig v;
    v.embed_dim = 768;
    v.intermediate_size = 3072;
    v.num_hidden_layers = 12;
    v.num_attention_heads = 12;
    v.image_size = 224;
    v.patch_size = 32;
    v.hidden_act = "quick_gelu";
    return v;
  }
};

// Reads and validates <dir>/config.json. Throws Error naming the file, key, expected and found
// value.
ClipConfig load_clip_config(const std::string& dir);
ClipConfig parse_clip_config(const std::string& json_text, const std::string& source);

}  // namespace flamingo
