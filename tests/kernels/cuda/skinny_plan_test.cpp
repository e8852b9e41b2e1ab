// The skinny CUDA product's host side (kernels/cuda/skinny_plan.cpp), on the CPU: the launch
// plan (grid, block, when 16-byte loads are used, errors), and the CPU reference of the
// kernel's summation order against a float64 product (within K x 2^-24 x sum |x||w|, the bound
// of recursive summation; a dropped or repeated product is far outside it) and alone vs in a
// batch. The GPU kernel is checked against this reference bit for bit in
// skinny_product_gpu_test (label gpu).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <stdexcept>
#include <vector>

#include "kernels/cuda/skinny_product.h"
#include "tests/kernels/cuda/cuda_test_util.h"

namespace flamingo::kernels::cuda {
namespace {

using testing::random_bf16;

TEST(SkinnyPlan, GridBlockAndVectorizedLoads) {
  alignas(16) static uint16_t buf[64];
  const SkinnyPlan p = skinny_bf16_plan(3, 4097, 4096, buf, buf);
  EXPECT_EQ(p.threads, 32 * kSkinnyWarps);
  EXPECT_EQ(p.blocks, (4097 + kSkinnyWarps - 1) / kSkinnyWarps);
  EXPECT_TRUE(p.vectorized);
  EXPECT_FALSE(skinny_bf16_plan(3, 8, 4100, buf, buf).vectorized);      // k % 8 != 0
  EXPECT_FALSE(skinny_bf16_plan(3, 8, 4096, buf + 1, buf).vectorized);  // x not 16-byte aligned
  EXPECT_FALSE(skinny_bf16_plan(3, 8, 4096, buf, buf + 4).vectorized);  // w not 16-byte aligned
  EXPECT_EQ(skinny_bf16_plan(0, 0, 0, buf, buf).blocks, 0);
  EXPECT_THROW(skinny_bf16_plan(-1, 8, 8, buf, buf), std::invalid_argument);
  EXPECT_THROW(skinny_bf16_plan(1, int64_t{1} << 31, 8, buf, buf), std::invalid_argument);
}

TEST(SkinnyReference, WithinRoundingOfAFloat64Product) {
  std::mt19937 rng(31);
  for (bool vectorized : {true, false}) {
    for (int64_t k : {8, 64, 256, 264, 1000, 4096}) {
      if (vectorized && k % 8 != 0) continue;
      for (int64_t m : {1, 3, 9, 17}) {
        const int64_t n = 7;
        const auto x = random_bf16(m * k, rng), w = random_bf16(n * k, rng);
        std::vector<float> y(m * n, -7.f);
        skinny_bf16_reference(x.data(), m, w.data(), n, k, y.data(), vectorized);
        for (int64_t r = 0; r < m; ++r) {
          for (int64_t c = 0; c < n; ++c) {
            double exact = 0, mag = 0;
            for (int64_t i = 0; i < k; ++i) {
              exact += bf16_value(x[r * k + i]) * bf16_value(w[c * k + i]);
              mag += std::fabs(bf16_value(x[r * k + i]) * bf16_value(w[c * k + i]));
            }
            EXPECT_LE(std::fabs(y[r * n + c] - exact), k * 0x1p-24 * mag)
                << "m=" << m << " k=" << k << " r=" << r << " c=" << c << " vec=" << vectorized;
          }
        }
      }
    }
  }
}

TEST(SkinnyReference, RowAloneEqualsRowInABatch) {
  std::mt19937 rng(32);
  const int64_t m = 20, n = 9, k = 520;
  const auto x = random_bf16(m * k, rng), w = random_bf16(n * k, rng);
  std::vector<float> all(m * n), one(n);
  skinny_bf16_reference(x.data(), m, w.data(), n, k, all.data(), true);
  for (int64_t r = 0; r < m; ++r) {
    skinny_bf16_reference(x.data() + r * k, 1, w.data(), n, k, one.data(), true);
    EXPECT_EQ(std::memcmp(one.data(), all.data() + r * n, n * sizeof(float)), 0) << r;
  }
}

}  // namespace
}  // namespace flamingo::kernels::cuda
