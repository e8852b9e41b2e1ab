// The int8 product against its definition (kernels/int8_product.h), written out here with
// plain loops: bit for bit on every ISA path this CPU can run; the activation quantization's
// error bound against float32 activations; non-finite activations; bad int8 weights.
#include "kernels/int8_product.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "kernels/weight_product.h"

namespace flamingo::kernels {
namespace {

std::vector<Isa> isas() {
  std::vector<Isa> v;
  for (Isa i :
       {Isa::kScalar, Isa::kAvx2, Isa::kAvx512, Isa::kAvx512Vnni, Isa::kAvx512Bf16, Isa::kAmx}) {
    if (i <= cpu_isa()) v.push_back(i);
  }
  return v;
}

// The definition, independently of the kernels: x quantized per group of 64 (max |x| / 127,
// round half to even), each group's exact integer dot times sx * sw added with one fma, in
// increasing groups.
float definition(const float* x, const int8_t* q, const float* sw, int64_t k) {
  const int64_t groups = (k + 63) / 64;
  float acc = 0.f;
  for (int64_t g = 0; g < groups; ++g) {
    float amax = 0.f;
    for (int64_t i = g * 64; i < std::min(k, g * 64 + 64); ++i)
      amax = std::max(amax, std::abs(x[i]));
    const float sx = amax / 127.f;
    int64_t d = 0;
    for (int64_t i = g * 64; i < std::min(k, g * 64 + 64); ++i) {
      const float r = sx > 0.f ? std::nearbyint(x[i] / sx) : 0.f;
      d += static_cast<int64_t>(std::clamp(r, -127.f, 127.f)) * q[i];
    }
    acc = std::fma(static_cast<float>(d), sx * sw[g], acc);
  }
  return acc;
}

// Every path's y = x W^T against the definition, bit for bit (x float32 [m, k] contiguous).
void expect_every_path_gives_the_definition(const at::Tensor& x, const PackedWeight& w,
                                            const std::string& what) {
  const int64_t m = x.size(0), k = x.size(1), n = w.rows();
  const auto [qt, st] = w.int8_rows();
  std::vector<float> want(m * n);
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t c = 0; c < n; ++c) {
      want[r * n + c] = definition(x.data_ptr<float>() + r * k, qt.data_ptr<int8_t>() + c * k,
                                   st.data_ptr<float>() + c * st.size(1), k);
    }
  }
  for (Isa isa : isas()) {
    const at::Tensor y = weight_product(x, w, {}, isa);
    EXPECT_EQ(std::memcmp(y.data_ptr<float>(), want.data(), want.size() * sizeof(float)), 0)
        << isa_name(isa) << " " << what;
  }
}

TEST(Int8Product, EveryPathGivesTheDefinitionBitForBit) {
  at::manual_seed(31);
  for (int64_t k : {1, 63, 64, 65, 200, 512, 577, 1100}) {
    for (int64_t m : {1, 3, 7, 8, 12, 16, 17, 50}) {  // AMX: 8-16 one x tile, 17+ two
      const int64_t n = 19;
      const PackedWeight w = PackedWeight::from_dense(at::randn({n, k}), WeightType::kInt8);
      at::Tensor x = at::randn({m, k});
      x[0].narrow(0, 0, std::min<int64_t>(k, 64)).zero_();  // an all-zero group: sx = 0
      expect_every_path_gives_the_definition(x, w,
                                             "m=" + std::to_string(m) + " k=" + std::to_string(k));
    }
  }
}

// More than 1024 groups along K: the AMX path's running integer sums restart at group 1024 (the
// bound that keeps them within int32); the bits stay the definition's across the restart.
TEST(Int8Product, LongKKeepsTheDefinitionOnEveryPath) {
  at::manual_seed(33);
  const int64_t k = 1030 * 64 + 5, n = 17;
  const PackedWeight w = PackedWeight::from_dense(at::randn({n, k}), WeightType::kInt8);
  for (int64_t m : {9, 17}) {
    expect_every_path_gives_the_definition(at::randn({m, k}), w, "long K m=" + std::to_string(m));
  }
}

// Activations exactly halfway between two steps (scale 1: max |x| = 127) round to even on
// every path, including the vectorized quantization of the AVX-512 and AVX2 paths.
TEST(Int8Product, HalfwayActivationsRoundToEvenOnEveryPath) {
  at::manual_seed(34);
  const int64_t k = 200, n = 20;
  const PackedWeight w = PackedWeight::from_dense(at::randn({n, k}), WeightType::kInt8);
  for (int64_t m : {2, 9}) {
    at::Tensor x = at::empty({m, k});
    for (int64_t r = 0; r < m; ++r) {
      for (int64_t i = 0; i < k; ++i) {
        x[r][i] = i % 64 == 0 ? 127.f : static_cast<float>((i * 7 + r) % 254 - 127) / 2.f;
      }
    }
    expect_every_path_gives_the_definition(x, w, "m=" + std::to_string(m));
  }
}

// Against float32 activations (same int8 weights): each x differs from its quantized value by
// at most half a step, sx / 2, so |y - y32| <= sum_k |w_k| sx(k) / 2 (+ float32 rounding).
// The bound holds with room and the difference is not zero (the activations were quantized).
TEST(Int8Product, ActivationQuantizationStaysWithinHalfAStep) {
  at::manual_seed(32);
  const int64_t k = 1000, n = 40, m = 6;
  const PackedWeight w = PackedWeight::from_dense(at::randn({n, k}), WeightType::kInt8);
  at::Tensor x = at::randn({m, k});
  x[1][300] = 40.f;  // an outlier: its own group's step grows, the others' do not
  const at::Tensor wd = w.dequantize().to(at::kDouble);
  const at::Tensor y = weight_product(x, w).to(at::kDouble);
  const at::Tensor y32 = at::matmul(x.to(at::kDouble), wd.t());
  std::vector<int8_t> q((k + 63) / 64 * 64);
  std::vector<float> s((k + 63) / 64);
  double worst = 0;
  for (int64_t r = 0; r < m; ++r) {
    quantize_activation_row(x.data_ptr<float>() + r * k, k, q.data(), s.data());
    at::Tensor step = at::empty({k}, at::kDouble);
    for (int64_t i = 0; i < k; ++i) step[i] = s[i / 64] / 2.0;
    const at::Tensor bound = at::matmul(wd.abs(), step) * (1 + 1e-5) + 1e-5;
    const at::Tensor diff = (y[r] - y32[r]).abs();
    EXPECT_TRUE((diff <= bound).all().item<bool>()) << "row " << r;
    worst = std::max(worst, diff.max().item<double>());
  }
  EXPECT_GT(worst, 0.0);
}

TEST(Int8Product, NonFiniteActivationGivesNaNInItsRowOnly) {
  const PackedWeight w = PackedWeight::from_dense(at::randn({9, 130}), WeightType::kInt8);
  for (int64_t m : {3, 8}) {  // 8: AMX rows where the CPU has it
    at::Tensor x = at::randn({m, 130});
    x[1][100] = std::numeric_limits<float>::infinity();
    for (Isa isa : isas()) {
      const at::Tensor y = weight_product(x, w, {}, isa);
      EXPECT_TRUE(y[1].isnan().all().item<bool>()) << isa_name(isa);
      EXPECT_TRUE(y[0].isfinite().all().item<bool>()) << isa_name(isa);
      EXPECT_TRUE(y[2].isfinite().all().item<bool>()) << isa_name(isa);
    }
  }
}

TEST(Int8Product, QuantizeActivationRow) {
  const float x[70] = {0.f, -127.f, 2.5f, 10.6f, 3.5f};  // then zeros; second group all zero
  int8_t q[128];
  float s[2];
  quantize_activation_row(x, 70, q, s);
  EXPECT_EQ(s[0], 1.f);
  EXPECT_EQ(s[1], 0.f);
  EXPECT_EQ(q[0], 0);
  EXPECT_EQ(q[1], -127);
  EXPECT_EQ(q[2], 2);  // half to even
  EXPECT_EQ(q[3], 11);
  EXPECT_EQ(q[4], 4);
  for (int i = 64; i < 128; ++i) EXPECT_EQ(q[i], 0) << i;  // zero group and padding
}

TEST(Int8Product, WeightsOutsideTheSymmetricRangeOrOtherGroupsAreRejected) {
  at::Tensor q = at::zeros({2, 64}, at::kChar);
  const at::Tensor s = at::ones({2, 1});
  EXPECT_NO_THROW(PackedWeight::from_int8(q, s, kInt8Group));
  q[1][5] = -128;
  try {
    PackedWeight::from_int8(q, s, kInt8Group);
    ADD_FAILURE() << "-128 accepted";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("[-127, 127]"), std::string::npos) << e.what();
  }
  EXPECT_THROW(PackedWeight::from_int8(at::zeros({2, 128}, at::kChar), s, 128), c10::Error);
  EXPECT_THROW(PackedWeight::from_dense(at::randn({2, 64}), WeightType::kInt8, 32), c10::Error);
}

}  // namespace
}  // namespace flamingo::kernels
