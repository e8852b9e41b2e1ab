// Building blocks with hand-computed values: RMSNorm, LayerNorm, activations, dense
// attention, the rotary tables (transformers' IdeficsEmbedding) and KV cache sizing.
#include "model/layers.h"

#include <gtest/gtest.h>

#include <cmath>

#include "model/kv_cache.h"
#include "model/llama_decoder.h"

namespace flamingo {
namespace {

at::Tensor vec(std::vector<float> v) { return at::tensor(v, at::kFloat); }

TEST(Layers, RmsNormByHand) {
  // mean(3^2, 4^2) = 12.5; 1/sqrt(12.5 + 0) = 0.28284271
  at::Tensor y = rms_norm(vec({3.f, 4.f}), vec({1.f, 2.f}), 0.0);
  EXPECT_NEAR(y[0].item<float>(), 3 * 0.28284271, 1e-6);
  EXPECT_NEAR(y[1].item<float>(), 2 * 4 * 0.28284271, 1e-6);
}

TEST(Layers, RmsNormBf16ComputesInFloatAndReturnsWeightDtype) {
  at::Tensor x = vec({3.f, 4.f}).to(at::kBFloat16);
  at::Tensor y = rms_norm(x, vec({1.f, 2.f}).to(at::kBFloat16), 1e-6);
  EXPECT_EQ(y.scalar_type(), at::kBFloat16);
  EXPECT_NEAR(y[1].item<float>(), 2.2627, 1e-2);
}

TEST(Layers, LayerNormByHand) {
  // x = [1, 3]: mean 2, var 1 -> [-1, 1] * w + b
  at::Tensor y = layer_norm(vec({1.f, 3.f}), vec({2.f, 3.f}), vec({0.5f, -0.5f}), 0.0);
  EXPECT_NEAR(y[0].item<float>(), -1.5, 1e-6);
  EXPECT_NEAR(y[1].item<float>(), 2.5, 1e-6);
  at::Tensor yb =
      layer_norm(vec({1.f, 3.f}).to(at::kBFloat16), vec({2.f, 3.f}), vec({0.5f, -0.5f}), 0.0);
  EXPECT_EQ(yb.scalar_type(), at::kBFloat16);
  EXPECT_NEAR(yb[1].item<float>(), 2.5, 1e-2);
}

TEST(Layers, ActivationsByHand) {
  at::Tensor one = vec({1.f});
  EXPECT_NEAR(activation(one, "gelu").item<float>(), 0.5 * (1 + std::erf(1 / std::sqrt(2.0))),
              1e-6);
  EXPECT_NEAR(activation(one, "quick_gelu").item<float>(), 1 / (1 + std::exp(-1.702)), 1e-6);
  const double t = std::tanh(std::sqrt(2 / M_PI) * (1 + 0.044715));
  EXPECT_NEAR(activation(one, "gelu_new").item<float>(), 0.5 * (1 + t), 1e-6);
  EXPECT_NEAR(activation(vec({-2.f}), "relu").item<float>(), 0.0, 0);
  EXPECT_NEAR(activation(one, "silu").item<float>(), 1 / (1 + std::exp(-1.0)), 1e-6);
  EXPECT_THROW(activation(one, "swish2"), std::exception);
}

TEST(Layers, DenseAttentionByHand) {
  // q = [1, 0]; keys [1, 0] and [0, 1]: weights softmax([1, 0]) = [e, 1] / (e + 1)
  at::Tensor q = vec({1.f, 0.f}).view({1, 2});
  at::Tensor k = vec({1.f, 0.f, 0.f, 1.f}).view({2, 2});
  at::Tensor v = vec({1.f, 2.f, 3.f, 4.f}).view({2, 2});
  at::Tensor out = dense_attention(q, k, v, 1.0);
  const double w0 = std::exp(1.0) / (std::exp(1.0) + 1);
  EXPECT_NEAR(out[0][0].item<float>(), w0 * 1 + (1 - w0) * 3, 1e-6);
  EXPECT_NEAR(out[0][1].item<float>(), w0 * 2 + (1 - w0) * 4, 1e-6);
}

TEST(Layers, RotaryTablesFollowRotateHalfLayout) {
  // head_dim 4: inv_freq = [1, 10000^-0.5 = 0.01]; row p = [p, 0.01p, p, 0.01p].
  RotaryTables rope(4, 3, 10000.0);
  ASSERT_EQ(rope.cos.sizes(), (at::IntArrayRef{3, 4}));
  const double angles[4] = {2.0, 0.02, 2.0, 0.02};
  for (int i = 0; i < 4; ++i) {
    EXPECT_NEAR(rope.cos[2][i].item<float>(), std::cos(angles[i]), 1e-6) << i;
    EXPECT_NEAR(rope.sin[2][i].item<float>(), std::sin(angles[i]), 1e-6) << i;
    EXPECT_NEAR(rope.cos[0][i].item<float>(), 1.0, 0) << i;
  }
}

TEST(Layers, LinearEqualsAtLinearForEveryRowCountAndLeadingShape) {
  at::manual_seed(3);
  at::Tensor w = at::randn({37, 19}), b = at::randn({37});
  const kernels::PackedWeight pw =
      kernels::PackedWeight::from_dense(w, kernels::WeightType::kFloat32);
  for (int64_t rows = 1; rows <= 70; ++rows) {
    at::Tensor x = at::randn({rows, 19});
    EXPECT_LE((linear(x, pw, b) - at::linear(x, w, b)).abs().max().item<double>(), 1e-5) << rows;
    EXPECT_LE((linear(x, pw) - at::linear(x, w)).abs().max().item<double>(), 1e-5) << rows;
  }
  const at::Tensor x3 = at::randn({2, 5, 19});
  const at::Tensor y3 = linear(x3, pw, b);
  EXPECT_EQ(y3.sizes(), (at::IntArrayRef{2, 5, 37}));
  EXPECT_LE((y3 - at::linear(x3, w, b)).abs().max().item<double>(), 1e-5);
  const at::Tensor xb = x3.to(at::kBFloat16);
  EXPECT_EQ(linear(xb, pw, b.to(at::kBFloat16)).scalar_type(), at::kBFloat16);
}

TEST(Layers, KvCacheShapesAndBytes) {
  ModelConfig c;
  c.num_hidden_layers = 3;
  c.hidden_size = 48;
  c.num_attention_heads = 4;
  KvCache cache(c, 5, 16, at::kFloat);
  EXPECT_EQ(cache.keys(2).sizes(), (at::IntArrayRef{5, 16, 4, 12}));
  EXPECT_EQ(KvCache::bytes_per_block(c, 16, at::kBFloat16), 2 * 3 * 16 * 48 * 2);
}

}  // namespace
}  // namespace flamingo
