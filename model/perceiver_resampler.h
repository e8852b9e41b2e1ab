// Perceiver Resampler of IDEFICS (transformers' IdeficsPerceiverResampler, after Flamingo,
// Alayrac et al. 2022, and Perceiver, Jaegle et al. 2021): learned latents attend to the
// image tokens AND to themselves (keys/values from concat(context, latents)), per-head
// LayerNorm on q/k when qk_layer_norms_perceiver, ReLU MLP, final LayerNorm. Each image is
// resampled on its own. Immutable after construction; forward is thread-safe.
#pragma once

#include <ATen/ATen.h>

#include <vector>

#include "model/config.h"
#include "model/layers.h"

namespace flamingo {

class PerceiverResampler {
 public:
  PerceiverResampler(const PerceiverConfig& config, int64_t embed_dim, WeightLoader& weights,
                     const std::string& prefix);

  // image_tokens [N, P, E] -> latents [N, n_latents, E]
  at::Tensor forward(const at::Tensor& image_tokens) const;

 private:
  struct Block {
    LayerNorm context_norm, latents_norm, q_norm, k_norm, mlp_norm;
    Linear q, k, v, out, fc, c_proj;
  };
  PerceiverConfig config_;
  int64_t embed_dim_;
  at::Tensor latents_;  // [n_latents, E]
  std::vector<Block> blocks_;
  LayerNorm final_norm_;
};

}  // namespace flamingo
