#include "model/llama_decoder.h"

#include <cmath>

#include "kernels/paged_attention.h"
#include "kernels/row_ops.h"

namespace flamingo {
namespace {

// x [T, H, hd]; cos/sin [T, hd]: x * cos + rotate_half(x) * sin.
at::Tensor apply_rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  if (x.device().is_cpu() && cos.scalar_type() == x.scalar_type() &&
      (x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16)) {
    return kernels::rotary(x, cos, sin);  // the same bits in one pass (kernels/row_ops.h)
  }
  const int64_t half = x.size(-1) / 2;
  at::Tensor rotated = at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
  return x * cos.unsqueeze(1) + rotated * sin.unsqueeze(1);
}

}  // namespace

RotaryTables::RotaryTables(int64_t head_dim, int64_t max_positions, double base) {
  at::Tensor inv_freq =
      1.0 / at::pow(base, at::arange(0, head_dim, 2, at::kLong).to(at::kFloat) / head_dim);
  at::Tensor t = at::arange(max_positions, at::kFloat);
  at::Tensor freqs = at::outer(t, inv_freq);
  at::Tensor emb = at::cat({freqs, freqs}, -1);
  cos = emb.cos();
  sin = emb.sin();
}

LlamaDecoderLayer::LlamaDecoderLayer(const ModelConfig& c, WeightLoader& w,
                                     const std::string& prefix)
    : heads_(c.num_attention_heads), head_dim_(c.head_dim()) {
  const int64_t d = c.hidden_size;
  input_norm_ = RmsNorm(w, prefix + ".input_layernorm", d, c.rms_norm_eps);
  post_norm_ = RmsNorm(w, prefix + ".post_attention_layernorm", d, c.rms_norm_eps);
  q_ = Linear(w, prefix + ".self_attn.q_proj", d, d, false);
  k_ = Linear(w, prefix + ".self_attn.k_proj", d, d, false);
  v_ = Linear(w, prefix + ".self_attn.v_proj", d, d, false);
  o_ = Linear(w, prefix + ".self_attn.o_proj", d, d, false);
  mlp_ = SwiGluMlp(w, prefix + ".mlp", d, c.intermediate_size);
}

at::Tensor LlamaDecoderLayer::forward(const at::Tensor& h, const AttentionMetadata& meta,
                                      at::Tensor& k_pool, at::Tensor& v_pool) const {
  const int64_t t = h.size(0);
  at::Tensor x = input_norm_(h);
  at::Tensor q = apply_rope(q_(x).view({t, heads_, head_dim_}), meta.cos, meta.sin);
  at::Tensor k = apply_rope(k_(x).view({t, heads_, head_dim_}), meta.cos, meta.sin);
  at::Tensor v = v_(x).view({t, heads_, head_dim_});
  k_pool.view({-1, heads_, head_dim_}).index_copy_(0, meta.slots, k);
  v_pool.view({-1, heads_, head_dim_}).index_copy_(0, meta.slots, v);
  at::Tensor a =
      kernels::paged_attention(q, k_pool, v_pool, meta.block_tables, meta.seq_of_token,
                               meta.context_lens, 1.0 / std::sqrt(static_cast<double>(head_dim_)));
  at::Tensor out = h + o_(a.view({t, heads_ * head_dim_}));
  return out + mlp_(post_norm_(out));
}

}  // namespace flamingo
