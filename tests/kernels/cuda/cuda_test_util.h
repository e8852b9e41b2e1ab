// Helpers of the CUDA kernel tests: a fixture that skips, saying why, where no CUDA device
// answers (label gpu), and random bfloat16 data.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <vector>

#include "kernels/cuda/bf16_bits.h"

namespace flamingo::kernels::cuda::testing {

// Standard normal values rounded to bfloat16, scaled by `scale` and shifted by `shift` first.
inline std::vector<uint16_t> random_bf16(size_t count, std::mt19937& rng, float scale = 1.f,
                                         float shift = 0.f) {
  std::normal_distribution<float> d;
  std::vector<uint16_t> v(count);
  for (auto& e : v) e = round_bf16(shift + scale * d(rng));
  return v;
}

}  // namespace flamingo::kernels::cuda::testing
