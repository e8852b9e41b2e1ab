#include "model/layers.h"

#include <cmath>

#include "kernels/row_ops.h"
#include "model/error.h"

namespace flamingo {

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  if (x.device().is_cpu() && weight.scalar_type() == x.scalar_type() &&
      (x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16)) {
    return kernels::rms_norm(x, weight, eps);  // one pass per row (kernels/row_ops.h)
  }
  at::Tensor xf = x.to(at::kFloat);
  at::Tensor variance = xf.pow(2).mean(-1, /*keepdim=*/true);
  at::Tensor y = xf * at::rsqrt(variance + eps);
  return weight * y.to(weight.scalar_type());
}

at::Tensor layer_norm(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                      double eps) {
  if (x.scalar_type() == at::kFloat) {
    return at::layer_norm(x, {x.size(-1)}, weight, bias, eps);
  }
  return at::layer_norm(x.to(at::kFloat), {x.size(-1)}, weight.to(at::kFloat),
                        bias.defined() ? bias.to(at::kFloat) : bias, eps)
      .to(x.scalar_type());
}

at::Tensor activation(const at::Tensor& x, const std::string& name) {
  if (name == "gelu") return at::gelu(x);
  if (name == "gelu_new" || name == "gelu_pytorch_tanh") return at::gelu(x, "tanh");
  if (name == "quick_gelu") return x * at::sigmoid(x * 1.702);
  if (name == "relu") return at::relu(x);
  if (name == "silu") return at::silu(x);
  throw Error("unsupported activation '" + name + "'");
}

at::Tensor dense_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                           double scale, const at::Tensor& mask) {
  at::Tensor scores = (at::matmul(q, k.transpose(-1, -2)) * scale).to(at::kFloat);
  if (mask.defined()) scores = scores + mask;
  at::Tensor probs = at::softmax(scores, -1).to(v.scalar_type());
  return at::matmul(probs, v);
}

at::Tensor linear(const at::Tensor& x, const kernels::PackedWeight& weight,
                  const at::Tensor& bias) {
  if (x.dim() == 2) return kernels::weight_product(x, weight, bias);
  std::vector<int64_t> out_shape(x.sizes().begin(), x.sizes().end());
  out_shape.back() = weight.rows();
  return kernels::weight_product(x.reshape({-1, x.size(-1)}), weight, bias).view(out_shape);
}

Linear::Linear(WeightLoader& w, const std::string& prefix, int64_t in, int64_t out, bool has_bias)
    : weight(w.get_linear(prefix + ".weight", {out, in})) {
  if (has_bias) bias = w.get(prefix + ".bias", {out});
}

LayerNorm::LayerNorm(WeightLoader& w, const std::string& prefix, int64_t dim, double eps_)
    : weight(w.get(prefix + ".weight", {dim})), bias(w.get(prefix + ".bias", {dim})), eps(eps_) {}

RmsNorm::RmsNorm(WeightLoader& w, const std::string& prefix, int64_t dim, double eps_)
    : weight(w.get(prefix + ".weight", {dim})), eps(eps_) {}

SwiGluMlp::SwiGluMlp(WeightLoader& w, const std::string& prefix, int64_t hidden,
                     int64_t intermediate)
    : gate(w, prefix + ".gate_proj", hidden, intermediate, false),
      up(w, prefix + ".up_proj", hidden, intermediate, false),
      down(w, prefix + ".down_proj", intermediate, hidden, false) {}

at::Tensor SwiGluMlp::operator()(const at::Tensor& x) const {
  const at::Tensor g = gate(x), u = up(x);
  if (g.device().is_cpu() && (g.scalar_type() == at::kFloat || g.scalar_type() == at::kBFloat16)) {
    return down(kernels::swiglu(g, u));  // one pass, silu in float32 (kernels/row_ops.h)
  }
  return down(at::silu(g) * u);
}

}  // namespace flamingo
