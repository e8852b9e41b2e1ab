// Small building blocks shared by the model components: norms, activations, projections and
// dense (non-paged) attention. Pure functions over ATen tensors; thread-safe.
#pragma once

#include <ATen/ATen.h>

#include <string>

#include "model/weights.h"

namespace flamingo {

// x * rsqrt(mean(x^2) + eps) computed in float32, cast back, times weight (LlamaRMSNorm).
at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps);

// LayerNorm over the last dim, computed in float32 and cast back to x's dtype.
at::Tensor layer_norm(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                      double eps);

// "gelu" (erf), "gelu_new"/"gelu_pytorch_tanh" (tanh approximation), "quick_gelu", "relu".
at::Tensor activation(const at::Tensor& x, const std::string& name);

// softmax(q k^T * scale + mask) v over the last two dims; q [..., Lq, D], k/v [..., Lk, D],
// mask (optional, float32) [Lq, Lk] added to the scores (-inf: masked). Softmax in float32 for
// reduced-precision inputs.
at::Tensor dense_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                           double scale, const at::Tensor& mask = {});

// x [..., in] -> x W^T + b [..., out] in x's dtype, through kernels::weight_product (float32
// sums, bit-identical for a row alone or in any batch; the bias added before a bfloat16 result
// is rounded).
at::Tensor linear(const at::Tensor& x, const kernels::PackedWeight& weight,
                  const at::Tensor& bias = {});

// A weight (held as the loader's linear weight type) and an optional bias (compute dtype),
// loaded as "<prefix>.weight" / "<prefix>.bias".
struct Linear {
  kernels::PackedWeight weight;  // [out, in]
  at::Tensor bias;               // [out] or undefined

  Linear() = default;
  Linear(WeightLoader& w, const std::string& prefix, int64_t in, int64_t out, bool bias);
  at::Tensor operator()(const at::Tensor& x) const { return linear(x, weight, bias); }
};

struct LayerNorm {
  at::Tensor weight, bias;
  double eps = 1e-5;

  LayerNorm() = default;
  LayerNorm(WeightLoader& w, const std::string& prefix, int64_t dim, double eps);
  at::Tensor operator()(const at::Tensor& x) const { return layer_norm(x, weight, bias, eps); }
};

struct RmsNorm {
  at::Tensor weight;
  double eps = 1e-6;

  RmsNorm() = default;
  RmsNorm(WeightLoader& w, const std::string& prefix, int64_t dim, double eps);
  at::Tensor operator()(const at::Tensor& x) const { return rms_norm(x, weight, eps); }
};

// LLaMA feed-forward: down(silu(gate(x)) * up(x)), no biases.
struct SwiGluMlp {
  Linear gate, up, down;

  SwiGluMlp() = default;
  SwiGluMlp(WeightLoader& w, const std::string& prefix, int64_t hidden, int64_t intermediate);
  at::Tensor operator()(const at::Tensor& x) const;
};

}  // namespace flamingo
