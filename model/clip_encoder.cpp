#include "model/clip_encoder.h"

#include <cmath>
#include <limits>

namespace flamingo {

ClipEncoder::ClipEncoder(const ClipEncoderShape& s, WeightLoader& w, const std::string& prefix)
    : shape_(s) {
  const int64_t e = s.embed_dim;
  for (int64_t i = 0; i < s.num_layers; ++i) {
    const std::string p = prefix + ".layers." + std::to_string(i);
    Layer l;
    l.norm1 = LayerNorm(w, p + ".layer_norm1", e, s.layer_norm_eps);
    l.norm2 = LayerNorm(w, p + ".layer_norm2", e, s.layer_norm_eps);
    l.q = Linear(w, p + ".self_attn.q_proj", e, e, true);
    l.k = Linear(w, p + ".self_attn.k_proj", e, e, true);
    l.v = Linear(w, p + ".self_attn.v_proj", e, e, true);
    l.out = Linear(w, p + ".self_attn.out_proj", e, e, true);
    l.fc1 = Linear(w, p + ".mlp.fc1", e, s.intermediate_size, true);
    l.fc2 = Linear(w, p + ".mlp.fc2", s.intermediate_size, e, true);
    layers_.push_back(std::move(l));
  }
}

at::Tensor ClipEncoder::forward(const at::Tensor& input, bool causal) const {
  const int64_t n = input.size(0), len = input.size(1);
  const int64_t e = shape_.embed_dim, heads = shape_.num_heads, hd = e / heads;
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  at::Tensor mask;  // [L, L]: -inf above the diagonal
  if (causal) {
    mask = at::full({len, len}, -std::numeric_limits<float>::infinity(), at::kFloat).triu(1);
  }
  at::Tensor x = input;
  for (const Layer& l : layers_) {
    const at::Tensor h = l.norm1(x);
    auto split = [&](const at::Tensor& t) { return t.view({n, len, heads, hd}).transpose(1, 2); };
    const at::Tensor q = split(l.q(h) * scale);
    const at::Tensor a = dense_attention(q, split(l.k(h)), split(l.v(h)), 1.0, mask)
                             .transpose(1, 2)
                             .reshape({n, len, e});
    x = x + l.out(a);
    x = x + l.fc2(activation(l.fc1(l.norm2(x)), shape_.hidden_act));
  }
  return x;
}

}  // namespace flamingo
