// bf16_dot_product (bfloat16 x and weights, vdpbf16ps) against the contract of the bfloat16
// product paths (tests/kernels/bf16_product_checks.h: a float64 reference over a grid of
// shapes, bit-identical rows alone or in any batch and thread count, weight_product routing it
// on Isa::kAvx512Bf16 only), and close to the float32 path's values. Skipped on CPUs without
// AVX-512 BF16.
#include "kernels/bf16_dot_product.h"

#include <gtest/gtest.h>

#include "kernels/cpu_isa.h"
#include "kernels/weight_product.h"
#include "tests/kernels/bf16_product_checks.h"

namespace flamingo::kernels {
namespace {

using namespace testing;

class Bf16DotProduct : public ::testing::Test {
 protected:
  void SetUp() override {
    if (cpu_isa() < Isa::kAvx512Bf16) {
      GTEST_SKIP() << "no AVX-512 BF16 here (" << cpu_flags_summary() << ")";
    }
  }
};

TEST_F(Bf16DotProduct, MatchesFloat64ReferenceOverShapeGrid) {
  expect_matches_float64_reference(bf16_dot_product);
}

TEST_F(Bf16DotProduct, RowsAreBitIdenticalAloneOrInAnyBatchAndThreadCount) {
  expect_rows_bit_identical_alone_or_in_any_batch(bf16_dot_product);
}

TEST_F(Bf16DotProduct, LargeProductSplitOverThreadsGivesTheSameBits) {
  expect_split_over_threads_gives_the_same_bits(bf16_dot_product);
}

TEST_F(Bf16DotProduct, RowDoesNotDependOnTheOtherRows) {
  expect_row_independent_of_the_other_rows(bf16_dot_product);
}

TEST_F(Bf16DotProduct, WeightProductUsesItForBFloat16ActivationsAndWeightsOnly) {
  expect_weight_product_routes_to_it(bf16_dot_product, Isa::kAvx512Bf16);
}

// The bits are not the float32 path's (a different summation order), but the values agree to
// float32 rounding: each is within K * 2^-24 * sum |x||w| of the exact sum.
TEST_F(Bf16DotProduct, CloseToTheFloat32PathForTheSameBFloat16Values) {
  at::manual_seed(26);
  const PackedWeight w = bf16_weight(40, 4096);
  const at::Tensor x = at::randn({5, 4096}).to(at::kBFloat16);
  const at::Tensor f32 = weight_product(x.to(at::kFloat), w, {}, Isa::kAvx512Vnni);
  const at::Tensor scale = at::matmul(x.to(at::kFloat).abs(), w.dequantize().abs().t());
  EXPECT_LE(((run_product(bf16_dot_product, x, w) - f32).abs() / scale).max().item<float>(),
            2 * 4096 * 0x1p-24);
}

TEST_F(Bf16DotProduct, EmptyShapes) { expect_empty_shapes_handled(bf16_dot_product); }

}  // namespace
}  // namespace flamingo::kernels
