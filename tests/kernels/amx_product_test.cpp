// amx_bf16_product (bfloat16 x and weights on AMX tiles) against the contract of the bfloat16
// product paths (tests/kernels/bf16_product_checks.h: a float64 reference over a grid of
// shapes, bit-identical rows alone or in any batch and thread count, weight_product routing it
// on Isa::kAmx only). Skipped on CPUs (or kernels) without AMX.
#include "kernels/amx_product.h"

#include <gtest/gtest.h>

#include "kernels/cpu_isa.h"
#include "tests/kernels/bf16_product_checks.h"

namespace flamingo::kernels {
namespace {

using namespace testing;

class AmxProduct : public ::testing::Test {
 protected:
  void SetUp() override {
    if (cpu_isa() < Isa::kAmx) GTEST_SKIP() << "no AMX-BF16 here (" << cpu_flags_summary() << ")";
  }
};

TEST_F(AmxProduct, MatchesFloat64ReferenceOverShapeGrid) {
  expect_matches_float64_reference(amx_bf16_product);
}

TEST_F(AmxProduct, RowsAreBitIdenticalAloneOrInAnyBatchAndThreadCount) {
  expect_rows_bit_identical_alone_or_in_any_batch(amx_bf16_product);
}

TEST_F(AmxProduct, LargeProductSplitOverThreadsGivesTheSameBits) {
  expect_split_over_threads_gives_the_same_bits(amx_bf16_product);
}

TEST_F(AmxProduct, RowDoesNotDependOnTheOtherRows) {
  expect_row_independent_of_the_other_rows(amx_bf16_product);
}

TEST_F(AmxProduct, WeightProductUsesItForBFloat16ActivationsAndWeightsOnly) {
  expect_weight_product_routes_to_it(amx_bf16_product, Isa::kAmx);
}

TEST_F(AmxProduct, EmptyShapes) { expect_empty_shapes_handled(amx_bf16_product); }

}  // namespace
}  // namespace flamingo::kernels
