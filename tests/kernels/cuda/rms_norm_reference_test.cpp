// The CPU reference of the fused residual add + RMSNorm CUDA kernel
// (kernels/cuda/rms_norm_reference.cpp): the residual written back is bf16(h + delta) exactly;
// the output is within two bfloat16 roundings (2^-7 relative) of the float64 formula
// weight * s / sqrt(mean(s^2) + eps), so the reference computes what model/layers.cpp's
// rms_norm does; bad sizes are errors. The GPU kernel is compared with it bit for bit in
// rms_norm_residual_gpu_test (label gpu).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <stdexcept>
#include <vector>

#include "kernels/cuda/rms_norm_residual.h"
#include "tests/kernels/cuda/cuda_test_util.h"

namespace flamingo::kernels::cuda {
namespace {

using testing::random_bf16;

TEST(RmsNormReference, ResidualAndNormAgainstFloat64) {
  std::mt19937 rng(51);
  for (int64_t d : {1, 7, 255, 256, 257, 4096}) {
    const int64_t rows = 3;
    std::vector<uint16_t> h = random_bf16(rows * d, rng), delta = random_bf16(rows * d, rng);
    const std::vector<uint16_t> w = random_bf16(d, rng, 0.1f, 1.f);
    std::vector<uint16_t> y(rows * d);
    const std::vector<uint16_t> h0 = h;
    rms_norm_residual_reference(h.data(), delta.data(), w.data(), y.data(), rows, d, 1e-6f);
    for (int64_t r = 0; r < rows; ++r) {
      double ss = 0;
      for (int64_t i = 0; i < d; ++i) {
        const uint16_t s = round_bf16(
            static_cast<float>(bf16_value(h0[r * d + i]) + bf16_value(delta[r * d + i])));
        ASSERT_EQ(h[r * d + i], s) << "d=" << d << " r=" << r << " i=" << i;
        ss += bf16_value(s) * bf16_value(s);
      }
      const double inv = 1.0 / std::sqrt(ss / d + 1e-6);
      for (int64_t i = 0; i < d; ++i) {
        const double want = bf16_value(w[i]) * bf16_value(h[r * d + i]) * inv;
        EXPECT_LE(std::fabs(bf16_value(y[r * d + i]) - want), 0x1p-7 * std::fabs(want) + 1e-30)
            << "d=" << d << " r=" << r << " i=" << i;
      }
    }
  }
}

TEST(RmsNormReference, WithoutDeltaTheInputIsOnlyRead) {
  const std::vector<uint16_t> h0 = {round_bf16(3.f), round_bf16(-4.f)};
  std::vector<uint16_t> h = h0, w = {round_bf16(1.f), round_bf16(2.f)}, y(2);
  rms_norm_residual_reference(h.data(), nullptr, w.data(), y.data(), 1, 2, 0.f);
  EXPECT_EQ(h, h0);
  // mean(9, 16) = 12.5: 3 / sqrt(12.5) = 0.8485..., -4 / sqrt(12.5) x 2 = -2.2627...
  EXPECT_NEAR(bf16_value(y[0]), 0.8485, 0.004);
  EXPECT_NEAR(bf16_value(y[1]), -2.2627, 0.01);
}

TEST(RmsNormReference, BadSizes) {
  uint16_t b[4] = {};
  EXPECT_THROW(rms_norm_residual_reference(b, nullptr, b, b, -1, 4, 0.f), std::invalid_argument);
  EXPECT_THROW(rms_norm_residual_reference(b, nullptr, b, b, 1, 0, 0.f), std::invalid_argument);
}

}  // namespace
}  // namespace flamingo::kernels::cuda
