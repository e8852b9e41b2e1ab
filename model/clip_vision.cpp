#include "model/clip_vision.h"

#include "model/error.h"

namespace flamingo {

ClipVision::ClipVision(const VisionConfig& c, WeightLoader& w, const std::string& prefix,
                       bool post_layernorm)
    : config_(c) {
  const int64_t e = c.embed_dim;
  patch_weight_ = w.get(prefix + ".embeddings.patch_embedding.weight",
                        {e, c.num_channels, c.patch_size, c.patch_size});
  class_embedding_ = w.get(prefix + ".embeddings.class_embedding", {e});
  positions_ = w.get(prefix + ".embeddings.position_embedding.weight", {c.num_positions(), e});
  pre_norm_ = LayerNorm(w, prefix + ".pre_layrnorm", e, c.layer_norm_eps);
  encoder_ = ClipEncoder({e, c.num_attention_heads, c.intermediate_size, c.num_hidden_layers,
                          c.layer_norm_eps, c.hidden_act},
                         w, prefix + ".encoder");
  if (post_layernorm) post_norm_ = LayerNorm(w, prefix + ".post_layernorm", e, c.layer_norm_eps);
}

at::Tensor ClipVision::forward(const at::Tensor& pixel_values) const {
  const int64_t n = pixel_values.size(0);
  const int64_t e = config_.embed_dim;
  at::Tensor patches =
      at::conv2d(pixel_values.to(patch_weight_.scalar_type()), patch_weight_, at::Tensor(),
                 {config_.patch_size, config_.patch_size});  // [N, E, g, g]
  patches = patches.flatten(2).transpose(1, 2);              // [N, g*g, E]
  at::Tensor cls = class_embedding_.expand({n, 1, e});
  at::Tensor x = at::cat({cls, patches}, 1) + positions_.unsqueeze(0);  // [N, P+1, E]
  return encoder_.forward(pre_norm_(x), /*causal=*/false);
}

at::Tensor ClipVision::pooled(const at::Tensor& pixel_values) const {
  if (!post_norm_.weight.defined()) throw Error("vision tower loaded without post_layernorm");
  return post_norm_(forward(pixel_values).select(1, 0));
}

}  // namespace flamingo
