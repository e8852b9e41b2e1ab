// Gated cross-attention layer of IDEFICS (transformers' IdeficsGatedCrossAttentionLayer,
// after Flamingo, Alayrac et al. 2022), inserted before chosen decoder layers:
//   h = h + tanh(alpha_cross_attn) * [token sees an image] * o(CrossAttn(RMSNorm(h), image))
//   h = h + tanh(alpha_dense) * SwiGLU(RMSNorm(h))     (applied to every token)
// Per-head RMSNorm on q and k when qk_layer_norms; no RoPE. Each image's K/V is computed once
// (image_kv) and reused by every token and decode step that attends to it. Each token sees at
// most one image, given as an index. Immutable after construction; thread-safe.
#pragma once

#include <ATen/ATen.h>

#include <string>
#include <vector>

#include "model/config.h"
#include "model/layers.h"

namespace flamingo {

// Tokens of a flattened batch grouped by the image they attend to; built once per forward.
// rows lists the token rows of all groups back to back; group g is rows[begin[g], begin[g+1]).
struct ImageGroups {
  std::vector<int32_t> image;  // image index of each group
  std::vector<int64_t> begin;  // group offsets into rows (size groups + 1)
  at::Tensor rows;             // int64 [tokens that see an image]
};

class GatedCrossAttention {
 public:
  GatedCrossAttention(const ModelConfig& config, WeightLoader& weights, const std::string& prefix);

  // latents [L, E] of one image -> {K, V}, each [H, L, head_dim] (K after its norm).
  std::pair<at::Tensor, at::Tensor> image_kv(const at::Tensor& latents) const;

  // h [T, hidden]; kv[i] = {K, V} of image i; groups say which rows see which image.
  at::Tensor forward(const at::Tensor& h,
                     const std::vector<const std::pair<at::Tensor, at::Tensor>*>& kv,
                     const ImageGroups& groups) const;

 private:
  at::Tensor forward_dense(const at::Tensor& h) const;

  int64_t heads_, head_dim_;
  bool qk_norms_;
  at::ScalarType dtype_;  // the compute dtype
  RmsNorm input_norm_, post_norm_, q_norm_, k_norm_;
  Linear q_, k_, v_, o_;
  SwiGluMlp mlp_;
  at::Tensor gate_attn_, gate_dense_;  // tanh(alpha), [1] or [hidden]
};

}  // namespace flamingo
