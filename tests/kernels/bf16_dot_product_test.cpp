// bf16_dot_product (bfloat16 x and weights, vdpbf16ps) against a float64 product over a grid
// of shapes (K off multiples of 32, N off multiples of 8, 1..70 rows); bit-identical rows alone
// or in any batch and thread count; a row independent of the others; weight_product choosing it
// only for bfloat16 x and weights on Isa::kAvx512Bf16. Skipped on CPUs without AVX-512 BF16.
#include "kernels/bf16_dot_product.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "kernels/cpu_isa.h"
#include "kernels/thread_pool.h"
#include "kernels/weight_product.h"
#include "tests/kernels/kernel_test_util.h"

namespace flamingo::kernels {
namespace {

using testing::bit_equal;
using testing::PoolGuard;

class Bf16DotProduct : public ::testing::Test {
 protected:
  void SetUp() override {
    if (cpu_isa() < Isa::kAvx512Bf16) {
      GTEST_SKIP() << "no AVX-512 BF16 here (" << cpu_flags_summary() << ")";
    }
  }
};

// y [m, n] float32 from the raw entry point.
at::Tensor dot(const at::Tensor& x, const PackedWeight& w) {
  const at::Tensor xc = x.contiguous();
  at::Tensor y = at::full({x.size(0), w.rows()}, -7.f);  // every element must be written
  bf16_dot_product(reinterpret_cast<const uint16_t*>(xc.data_ptr()), x.size(0), w.view(),
                   y.data_ptr<float>());
  return y;
}

PackedWeight bf16_weight(int64_t n, int64_t k) {
  return PackedWeight::from_dense(at::randn({n, k}).to(at::kBFloat16), WeightType::kBFloat16);
}

std::string label(int64_t m, int64_t n, int64_t k) {
  return "m=" + std::to_string(m) + " n=" + std::to_string(n) + " k=" + std::to_string(k);
}

// The products of bfloat16 values are exact in float32, so the only error is the float32
// additions': however vdpbf16ps orders a lane's two, each sum of at most kp terms (K padded to
// 32) is within kp * 2^-24 * sum |x||w| of the exact sum (the worst case of
// recursive summation). A dropped or repeated product (about 1/K of the sum) is far outside.
TEST_F(Bf16DotProduct, MatchesFloat64ReferenceOverShapeGrid) {
  at::manual_seed(21);
  for (int64_t k : {1, 2, 15, 31, 32, 33, 64, 100, 513, 1031}) {  // tiles of 512
    const int64_t kp = (k + 31) / 32 * 32;
    for (int64_t n : {1, 7, 16, 17, 33, 47, 64, 100}) {
      const PackedWeight w = bf16_weight(n, k);
      const at::Tensor wd = w.dequantize().to(at::kDouble);
      for (int64_t m : {1, 2, 3, 5, 15, 16, 17, 31, 33, 49, 70}) {
        const at::Tensor x = at::randn({m, k}).to(at::kBFloat16);
        const at::Tensor xd = x.to(at::kDouble);
        const at::Tensor ref = at::matmul(xd, wd.t());
        const at::Tensor bound =
            at::matmul(xd.abs(), wd.abs().t()) * (static_cast<double>(kp) * 0x1p-24) + 1e-30;
        const at::Tensor excess = (dot(x, w).to(at::kDouble) - ref).abs() - bound;
        EXPECT_LE(excess.max().item<double>(), 0.0) << label(m, n, k);
      }
    }
  }
}

// Row r of any batch equals row r alone, bit for bit: batches of 1..70 rows (any register block,
// several K tiles, several row groups), under 1, 2 and 3 threads; K and N off the vector and block
// sizes so that the padded tails take part.
TEST_F(Bf16DotProduct, RowsAreBitIdenticalAloneOrInAnyBatchAndThreadCount) {
  PoolGuard guard;
  at::manual_seed(22);
  const int64_t k = 1000, n = 150;
  const at::Tensor x = at::randn({70, k}).to(at::kBFloat16);
  const PackedWeight w = bf16_weight(n, k);
  set_kernel_threads(1);
  std::vector<at::Tensor> alone;
  for (int64_t r = 0; r < 70; ++r) alone.push_back(dot(x.narrow(0, r, 1), w));
  for (int threads : {1, 2, 3}) {
    set_kernel_threads(threads);
    for (int64_t m = 1; m <= 70; ++m) {
      const at::Tensor y = dot(x.narrow(0, 0, m), w);
      for (int64_t r = 0; r < m; ++r) {
        ASSERT_TRUE(bit_equal(y.narrow(0, r, 1), alone[r]))
            << label(m, n, k) << " row " << r << " threads " << threads;
      }
    }
  }
}

// Big enough (m x n x k >= 2^18) to be split over the pool: the split changes nothing.
TEST_F(Bf16DotProduct, LargeProductSplitOverThreadsGivesTheSameBits) {
  PoolGuard guard;
  at::manual_seed(23);
  const PackedWeight w = bf16_weight(1000, 768);  // 125 column blocks of 8
  const at::Tensor x = at::randn({40, 768}).to(at::kBFloat16);
  set_kernel_threads(1);
  const at::Tensor one = dot(x, w);
  set_kernel_threads(4);
  EXPECT_TRUE(bit_equal(dot(x, w), one));
  EXPECT_TRUE(bit_equal(dot(x.narrow(0, 39, 1), w), one.narrow(0, 39, 1)));
}

TEST_F(Bf16DotProduct, RowDoesNotDependOnTheOtherRows) {
  at::manual_seed(24);
  const PackedWeight w = bf16_weight(40, 256);
  at::Tensor x = at::randn({20, 256}).to(at::kBFloat16);
  const at::Tensor before = dot(x, w);
  x.narrow(0, 0, 4).mul_(1000.f);
  x.narrow(0, 5, 15).zero_();
  EXPECT_TRUE(bit_equal(before[4], dot(x, w)[4]));
}

TEST_F(Bf16DotProduct, WeightProductUsesItForBFloat16ActivationsAndWeightsOnly) {
  at::manual_seed(25);
  const PackedWeight w = bf16_weight(24, 80);
  const at::Tensor x = at::randn({3, 80}).to(at::kBFloat16), b = at::randn({24});
  // bfloat16 x: the dot-product sums, the bias added in float32, rounded once.
  EXPECT_TRUE(
      bit_equal(weight_product(x, w, b, Isa::kAvx512Bf16), dot(x, w).add(b).to(at::kBFloat16)));
  // Below AVX-512 BF16, and for float32 x, the float32 path.
  EXPECT_TRUE(
      bit_equal(weight_product(x, w, {}, Isa::kAvx512Vnni),
                weight_product(x.to(at::kFloat), w, {}, Isa::kAvx512Vnni).to(at::kBFloat16)));
  EXPECT_TRUE(bit_equal(weight_product(x.to(at::kFloat), w, {}, Isa::kAvx512Bf16),
                        weight_product(x.to(at::kFloat), w, {}, Isa::kAvx512Vnni)));
  // float32 weights with bfloat16 x: not vdpbf16ps either.
  const PackedWeight wf = PackedWeight::from_dense(w.dequantize(), WeightType::kFloat32);
  EXPECT_TRUE(bit_equal(weight_product(x, wf, {}, Isa::kAvx512Bf16),
                        weight_product(x, wf, {}, Isa::kAvx512Vnni)));
}

// The bits are not the float32 path's (a different summation order), but the values agree to
// float32 rounding: each is within K * 2^-24 * sum |x||w| of the exact sum (the bound above).
TEST_F(Bf16DotProduct, CloseToTheFloat32PathForTheSameBFloat16Values) {
  at::manual_seed(26);
  const PackedWeight w = bf16_weight(40, 4096);
  const at::Tensor x = at::randn({5, 4096}).to(at::kBFloat16);
  const at::Tensor f32 = weight_product(x.to(at::kFloat), w, {}, Isa::kAvx512Vnni);
  const at::Tensor scale = at::matmul(x.to(at::kFloat).abs(), w.dequantize().abs().t());
  EXPECT_LE(((dot(x, w) - f32).abs() / scale).max().item<float>(), 2 * 4096 * 0x1p-24);
}

TEST_F(Bf16DotProduct, EmptyShapes) {
  const PackedWeight w = bf16_weight(5, 0);
  const at::Tensor x = at::randn({3, 0}).to(at::kBFloat16);
  EXPECT_EQ(dot(x, w).abs().sum().item<float>(), 0.f);
  at::Tensor y = at::full({1, 1}, 3.f);
  bf16_dot_product(nullptr, 0, bf16_weight(1, 4).view(), y.data_ptr<float>());
  EXPECT_EQ(y.item<float>(), 3.f);
}

}  // namespace
}  // namespace flamingo::kernels
