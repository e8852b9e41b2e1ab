// CLIP-style vision transformer of IDEFICS (transformers' IdeficsVisionTransformer, after
// OpenAI CLIP, Radford et al. 2021): patch conv + class token + learned positions,
// pre-LayerNorm, pre-norm encoder layers (clip_encoder.h). forward() returns
// last_hidden_state: every token (CLS included), WITHOUT post_layernorm, which IDEFICS never
// applies to the sequence; CLIP's pooled output is post_layernorm of the class token
// (pooled(), when constructed with it). Immutable after construction; thread-safe.
#pragma once

#include <ATen/ATen.h>

#include "model/clip_encoder.h"
#include "model/config.h"
#include "model/layers.h"

namespace flamingo {

class ClipVision {
 public:
  // post_layernorm: also load "<prefix>.post_layernorm" (CLIP's pooled output).
  ClipVision(const VisionConfig& config, WeightLoader& weights, const std::string& prefix,
             bool post_layernorm = false);

  // pixel_values [N, 3, S, S] (any float dtype) -> [N, num_positions, embed_dim]
  at::Tensor forward(const at::Tensor& pixel_values) const;
  // pixel_values [N, 3, S, S] -> post_layernorm(class token) [N, embed_dim] (CLIPVisionModel's
  // pooler_output). Needs post_layernorm at construction.
  at::Tensor pooled(const at::Tensor& pixel_values) const;

 private:
  VisionConfig config_;
  at::Tensor patch_weight_;     // [E, 3, P, P]
  at::Tensor class_embedding_;  // [E]
  at::Tensor positions_;        // [num_positions, E]
  LayerNorm pre_norm_;
  ClipEncoder encoder_;
  LayerNorm post_norm_;  // CLIP only
};

}  // namespace flamingo
