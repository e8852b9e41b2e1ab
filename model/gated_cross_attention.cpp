#include "model/gated_cross_attention.h"

#include <cmath>

#include "kernels/row_attention.h"

namespace flamingo {

GatedCrossAttention::GatedCrossAttention(const ModelConfig& c, WeightLoader& w,
                                         const std::string& prefix)
    : heads_(c.num_attention_heads),
      head_dim_(c.head_dim()),
      qk_norms_(c.qk_layer_norms),
      dtype_(w.dtype()) {
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
  at::Tensor x = latents.to(dtype_);
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
    // One q projection for every token that sees an image, then attention row by row
    // (kernels/row_attention): a row's bits do not depend on the other rows or images.
    at::Tensor q_all = q_(input_norm_(h.index_select(0, groups.rows)))
                           .view({-1, heads_, head_dim_});  // [rows, H, hd]
    if (qk_norms_) q_all = q_norm_(q_all);
    q_all = q_all.contiguous();
    std::vector<at::Tensor> held;  // contiguous K/V (image_kv makes them so: no copy then)
    held.reserve(2 * groups.image.size());
    std::vector<kernels::RowAttentionKV> group_kv;
    for (int32_t img : groups.image) {
      held.push_back(kv[img]->first.contiguous());
      held.push_back(kv[img]->second.contiguous());
      group_kv.push_back({&held[held.size() - 2], &held.back()});
    }
    at::Tensor attn_rows = at::empty_like(q_all);
    kernels::row_attention_groups(q_all, group_kv, groups.begin, scale, attn_rows);
    attn_rows = attn_rows.view({q_all.size(0), -1});
    // Rows that see no image keep a zero attention output (the gate of the reference).
    at::Tensor attn = at::zeros_like(h).index_copy_(0, groups.rows, attn_rows);
    return forward_dense(h + gate_attn_ * o_(attn));
  }
  return forward_dense(h);
}

at::Tensor GatedCrossAttention::forward_dense(const at::Tensor& h) const {
  return h + gate_dense_ * mlp_(post_norm_(h));
}

}  // namespace flamingo
