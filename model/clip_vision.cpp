#include "model/clip_vision.h"

#include <cmath>

namespace flamingo {

ClipVision::ClipVision(const VisionConfig& c, WeightLoader& w, const std::string& prefix)
    : config_(c) {
  const int64_t e = c.embed_dim;
  patch_weight_ = w.get(prefix + ".embeddings.patch_embedding.weight",
                        {e, c.num_channels, c.patch_size, c.patch_size});
  class_embedding_ = w.get(prefix + ".embeddings.class_embedding", {e});
  positions_ = w.get(prefix + ".embeddings.position_embedding.weight", {c.num_positions(), e});
  pre_norm_ = LayerNorm(w, prefix + ".pre_layrnorm", e, c.layer_norm_eps);
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = prefix + ".encoder.layers." + std::to_string(i);
    Layer l;
    l.norm1 = LayerNorm(w, p + ".layer_norm1", e, c.layer_norm_eps);
    l.norm2 = LayerNorm(w, p + ".layer_norm2", e, c.layer_norm_eps);
    l.q = Linear(w, p + ".self_attn.q_proj", e, e, true);
    l.k = Linear(w, p + ".self_attn.k_proj", e, e, true);
    l.v = Linear(w, p + ".self_attn.v_proj", e, e, true);
    l.out = Linear(w, p + ".self_attn.out_proj", e, e, true);
    l.fc1 = Linear(w, p + ".mlp.fc1", e, c.intermediate_size, true);
    l.fc2 = Linear(w, p + ".mlp.fc2", c.intermediate_size, e, true);
    layers_.push_back(std::move(l));
  }
}

at::Tensor ClipVision::forward(const at::Tensor& pixel_values) const {
  const int64_t n = pixel_values.size(0);
  const int64_t e = config_.embed_dim;
  const int64_t heads = config_.num_attention_heads;
  const int64_t hd = config_.head_dim();
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  at::Tensor patches =
      at::conv2d(pixel_values.to(patch_weight_.scalar_type()), patch_weight_, at::Tensor(),
                 {config_.patch_size, config_.patch_size});  // [N, E, g, g]
  patches = patches.flatten(2).transpose(1, 2);              // [N, g*g, E]
  at::Tensor cls = class_embedding_.expand({n, 1, e});
  at::Tensor x = at::cat({cls, patches}, 1) + positions_.unsqueeze(0);  // [N, P+1, E]
  x = pre_norm_(x);
  const int64_t len = x.size(1);
  for (const Layer& l : layers_) {
    at::Tensor h = l.norm1(x);
    auto split = [&](const at::Tensor& t) { return t.view({n, len, heads, hd}).transpose(1, 2); };
    at::Tensor q = split(l.q(h) * scale);
    at::Tensor k = split(l.k(h));
    at::Tensor v = split(l.v(h));
    at::Tensor a = dense_attention(q, k, v, 1.0).transpose(1, 2).reshape({n, len, e});
    x = x + l.out(a);
    x = x + l.fc2(activation(l.fc1(l.norm2(x)), config_.hidden_act));
  }
  return x;
}

}  // namespace flamingo
