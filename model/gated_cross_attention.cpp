#include "model/gated_cross_attention.h"

#include <cmath>

namespace flamingo {

GatedCrossAttention::GatedCrossAttention(const ModelConfig& c, WeightLoader& w,
                                         const std::string& prefix)
    : heads_(c.num_attention_heads), head_dim_(c.head_dim()), qk_norms_(c.qk_layer_norms) {
  const int64_t d = c.hidden_size;
  const int64_t kv_in = c.vision.embed_dim;
  input_norm_ = RmsNorm(w, prefix + ".input_layernorm", d, c.rms_norm_eps);
  post_norm_ = RmsNorm(w, prefix + ".post_attention_layernorm", d, c.rms_norm_eps);
  q_ = Linear(w, prefix + ".cross_attn.q_proj", d, d, false);
  k_ = Linear(w, prefix + ".cross_attn.k_proj", kv_in, d, false);
  v_ = Linear(w, prefix + ".cross_attn.v_proj", kv_in, d, false);
  o_ = Linear(w, prefix + ".cross_attn.o_proj", d, d, false);
  if (qk_norms_) {
    q_norm_ = RmsNorm(w, prefix + ".cross_attn.q_layer_norm", head_dim_, c.rms_norm_eps);
    k_norm_ = RmsNorm(w, prefix + ".cross_attn.k_layer_norm", head_dim_, c.rms_norm_eps);
  }
  mlp_ = SwiGluMlp(w, prefix + ".mlp", d, c.intermediate_size);
  std::vector<int64_t> alpha_shape =
      c.alpha_type == "float" ? std::vector<int64_t>{1} : std::vector<int64_t>{1, 1, d};
  gate_attn_ = at::tanh(w.get(prefix + ".alpha_cross_attn", alpha_shape).to(at::kFloat))
                   .reshape({-1})
                   .to(w.dtype());
  gate_dense_ = at::tanh(w.get(prefix + ".alpha_dense", alpha_shape).to(at::kFloat))
                    .reshape({-1})
                    .to(w.dtype());
}

std::pair<at::Tensor, at::Tensor> GatedCrossAttention::image_kv(const at::Tensor& latents) const {
  const int64_t l = latents.size(0);
  at::Tensor x = latents.to(k_.weight.scalar_type());
  at::Tensor k = k_(x).view({l, heads_, head_dim_}).transpose(0, 1);  // [H, L, hd]
  at::Tensor v = v_(x).view({l, heads_, head_dim_}).transpose(0, 1);
  if (qk_norms_) k = k_norm_(k);
  return {k.contiguous(), v.contiguous()};
}

at::Tensor GatedCrossAttention::forward(
    const at::Tensor& h, const std::vector<const std::pair<at::Tensor, at::Tensor>*>& kv,
    const ImageGroups& groups) const {
  const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim_));
  if (!groups.image.empty()) {
    at::Tensor x = input_norm_(h);
    at::Tensor attn = at::zeros_like(h);  // rows that see no image stay zero
    for (size_t g = 0; g < groups.image.size(); ++g) {
      const at::Tensor& rows = groups.tokens[g];
      const auto& [k, v] = *kv[groups.image[g]];
      at::Tensor q = q_(x.index_select(0, rows));                  // [t, hidden]
      q = q.view({q.size(0), heads_, head_dim_}).transpose(0, 1);  // [H, t, hd]
      if (qk_norms_) q = q_norm_(q);
      at::Tensor a = dense_attention(q, k, v, scale).transpose(0, 1).reshape({q.size(1), -1});
      attn.index_copy_(0, rows, a);
    }
    return forward_dense(h + gate_attn_ * o_(attn));
  }
  return forward_dense(h);
}

at::Tensor GatedCrossAttention::forward_dense(const at::Tensor& h) const {
  return h + gate_dense_ * mlp_(post_norm_(h));
}

}  // namespace flamingo
