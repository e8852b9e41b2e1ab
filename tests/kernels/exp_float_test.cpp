// exp_float (kernels/exp_float.h), the exp that SwiGLU uses on the CPU and the CUDA kernels use
// on the GPU: within 2 units in the last place of float32 of the float64 exp where the result
// is a normal float32, +inf above 88.72, 0 below -87.33, exp(0) = 1 exactly.
#include "kernels/exp_float.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>

namespace flamingo::kernels {
namespace {

TEST(ExpFloat, WithinTwoUlpOfFloat64) {
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(-87.f, 88.7f);
  for (int n = 0; n < 200000; ++n) {
    const float x = n < 2000 ? -10.f + n * 0.01f : u(rng);
    const double want = std::exp(static_cast<double>(x));
    const float got = exp_float(x);
    const double ulp = std::ldexp(1.0, std::ilogb(static_cast<float>(want)) - 23);
    ASSERT_LE(std::fabs(got - want), 2 * ulp) << "x=" << x;
  }
}

TEST(ExpFloat, Limits) {
  EXPECT_EQ(exp_float(0.f), 1.f);
  EXPECT_EQ(exp_float(88.8f), std::numeric_limits<float>::infinity());
  EXPECT_EQ(exp_float(std::numeric_limits<float>::infinity()),
            std::numeric_limits<float>::infinity());
  EXPECT_EQ(exp_float(-87.4f), 0.f);
  EXPECT_EQ(exp_float(-std::numeric_limits<float>::infinity()), 0.f);
  EXPECT_TRUE(std::isfinite(exp_float(88.72f)));
  EXPECT_GT(exp_float(-87.33f), 0.f);
}

}  // namespace
}  // namespace flamingo::kernels
