// Small building blocks shared by the model components: norms, activations, projections and
// dense (non-paged) attention. Pure functions over ATen tensors; thread-safe.
#pragma once

#include <ATen/ATen.h>

#include <string>

#include "kernels/skinny_gemm.h"
#include "model/weights.h"

namespace flamingo {

// x * rsqrt(mean(x^2) + eps) computed in float32, cast back, times weight (LlamaRMSNorm).
at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps);

// LayerNorm over the last dim, computed in float32 and cast back to x's dtype.
at::Tensor layer_norm(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                      double eps);

// "gelu" (erf), "gelu_new"/"gelu_pytorch_tanh" (tanh approximation), "quick_gelu", "relu".
at::Tensor activation(const at::Tensor& x, const std::string& name);

// softmax(q k^T * scale) v over the last two dims; q [..., Lq, D], k/v [..., Lk, D].
// Softmax in float32 for reduced-precision inputs.
at::Tensor dense_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                           double scale);

// x [rows, in] -> x W^T + b. Float32 2-D inputs of 1 to kernels::kMaxSkinnyRows rows (decode
// steps) take kernels::skinny_gemm, which streams the weight once at memory speed whatever the
// row count (OpenBLAS's sgemm streams it at 5-8 GB/s for few rows) and gives each row the same
// bits alone or in a batch; other inputs take at::linear.
at::Tensor project(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias = {});

// A weight and an optional bias, loaded as "<prefix>.weight" / "<prefix>.bias".
struct Linear {
  at::Tensor weight;  // [out, in]
  at::Tensor bias;    // [out] or undefined

  Linear() = default;
  Linear(WeightLoader& w, const std::string& prefix, int64_t in, int64_t out, bool bias);
  at::Tensor operator()(const at::Tensor& x) const { return project(x, weight, bias); }
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
