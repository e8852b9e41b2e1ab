#include "model/perceiver_resampler.h"

#include <cmath>

namespace flamingo {

PerceiverResampler::PerceiverResampler(const PerceiverConfig& c, int64_t e, WeightLoader& w,
                                       const std::string& prefix)
    : config_(c), embed_dim_(e) {
  const int64_t inner = c.resampler_n_heads * c.resampler_head_dim;
  const double eps = c.layer_norm_eps;
  latents_ = w.get(prefix + ".latents", {c.resampler_n_latents, e});
  for (int64_t i = 0; i < c.resampler_depth; ++i) {
    const std::string a = prefix + ".blocks." + std::to_string(i) + ".0";
    const std::string m = prefix + ".blocks." + std::to_string(i) + ".1";
    Block b;
    b.context_norm = LayerNorm(w, a + ".context_layer_norm", e, eps);
    b.latents_norm = LayerNorm(w, a + ".latents_layer_norm", e, eps);
    if (c.qk_layer_norms_perceiver) {
      b.q_norm = LayerNorm(w, a + ".q_layer_norm", c.resampler_head_dim, eps);
      b.k_norm = LayerNorm(w, a + ".k_layer_norm", c.resampler_head_dim, eps);
    }
    b.q = Linear(w, a + ".q_proj", e, inner, false);
    b.k = Linear(w, a + ".k_proj", e, inner, false);
    b.v = Linear(w, a + ".v_proj", e, inner, false);
    b.out = Linear(w, a + ".output_proj", inner, e, false);
    b.mlp_norm = LayerNorm(w, m + ".ln", e, eps);
    b.fc = Linear(w, m + ".fc", e, 4 * e, false);
    b.c_proj = Linear(w, m + ".c_proj", 4 * e, e, false);
    blocks_.push_back(std::move(b));
  }
  final_norm_ = LayerNorm(w, prefix + ".layer_norm", e, eps);
}

at::Tensor PerceiverResampler::forward(const at::Tensor& image_tokens) const {
  const int64_t n = image_tokens.size(0);
  const int64_t heads = config_.resampler_n_heads;
  const int64_t hd = config_.resampler_head_dim;
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  at::Tensor context = image_tokens.to(latents_.scalar_type());
  at::Tensor lat = latents_.unsqueeze(0).expand({n, -1, -1}).contiguous();
  for (const Block& b : blocks_) {
    at::Tensor ctx = b.context_norm(context);
    at::Tensor l = b.latents_norm(lat);
    at::Tensor kv_in = at::cat({ctx, l}, 1);
    auto split = [&](const at::Tensor& t) {
      return t.view({n, t.size(1), heads, hd}).transpose(1, 2);  // [N, H, len, hd]
    };
    at::Tensor q = split(b.q(l));
    at::Tensor k = split(b.k(kv_in));
    at::Tensor v = split(b.v(kv_in));
    if (config_.qk_layer_norms_perceiver) {
      q = b.q_norm(q);
      k = b.k_norm(k);
    }
    at::Tensor a = dense_attention(q * scale, k, v, 1.0);  // [N, H, L, hd]
    lat = b.out(a.transpose(1, 2).flatten(2)) + lat;
    lat = b.c_proj(at::relu(b.fc(b.mlp_norm(lat)))) + lat;
  }
  return final_norm_(lat);
}

}  // namespace flamingo
