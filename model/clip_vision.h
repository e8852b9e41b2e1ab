// CLIP-style vision transformer of IDEFICS (transformers' IdeficsVisionTransformer, after
// OpenAI CLIP, Radford et al. 2021): patch conv + class token + learned positions,
// pre-LayerNorm, pre-norm encoder layers. Returns last_hidden_state: every token (CLS
// included), WITHOUT post_layernorm, which IDEFICS never applies to the sequence.
// Immutable after construction; forward is thread-safe.
#pragma once

#include <ATen/ATen.h>

#include <vector>

#include "model/config.h"
#include "model/layers.h"

namespace flamingo {

class ClipVision {
 public:
  ClipVision(const VisionConfig& config, WeightLoader& weights, const std::string& prefix);

  // pixel_values [N, 3, S, S] (any float dtype) -> [N, num_positions, embed_dim]
  at::Tensor forward(const at::Tensor& pixel_values) const;

 private:
  struct Layer {
    LayerNorm norm1, norm2;
    Linear q, k, v, out, fc1, fc2;
  };
  VisionConfig config_;
  at::Tensor patch_weight_;     // [E, 3, P, P]
  at::Tensor class_embedding_;  // [E]
  at::Tensor positions_;        // [num_positions, E]
  LayerNorm pre_norm_;
  std::vector<Layer> layers_;
};

}  // namespace flamingo
