// Host side of kernels/cuda/rms_norm_residual.h: the CPU reference of the kernel's order
// (compiled by the C++ compiler; no CUDA needed) and the argument checks both share.
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

#include "kernels/cuda/bf16_bits.h"
#include "kernels/cuda/rms_norm_residual.h"

namespace flamingo::kernels::cuda {
namespace {}  // namespace

void check_rms_norm_sizes(int64_t rows, int64_t d) {
  if (rows < 0 || d <= 0 || rows > 2147483647) {
    throw std::invalid_argument("rms_norm_residual: rows=" + std::to_string(rows) +
                                " d=" + std::to_string(d) + " (need 0 <= rows < 2^31, d >= 1)");
  }
}

void rms_norm_residual_reference(uint16_t* h, const uint16_t* delta, const uint16_t* weight,
                                 uint16_t* y, int64_t rows, int64_t d, float eps) {
  check_rms_norm_sizes(rows, d);
  for (int64_t r = 0; r < rows; ++r) {
    uint16_t* hr = h + r * d;
    if (delta != nullptr) {
      for (int64_t i = 0; i < d; ++i) {
        hr[i] = round_bf16(bf16_value(hr[i]) + bf16_value(delta[r * d + i]));
      }
    }
    float part[kRmsThreads] = {};
    for (int t = 0; t < kRmsThreads; ++t) {
      for (int64_t i = t; i < d; i += kRmsThreads) {
        const float s = bf16_value(hr[i]);
        part[t] = std::fma(s, s, part[t]);
      }
    }
    auto butterfly = [](float* v) {  // 32 lanes -> every lane holds the same sum; lane 0's
      for (int o = 16; o >= 1; o /= 2) {
        float next[32];
        for (int l = 0; l < 32; ++l) next[l] = v[l] + v[l ^ o];
        std::memcpy(v, next, sizeof next);
      }
      return v[0];
    };
    float warps[32] = {};
    for (int w = 0; w < kRmsThreads / 32; ++w) warps[w] = butterfly(part + 32 * w);
    const float total = butterfly(warps);
    const float inv = 1.0f / std::sqrt(total / static_cast<float>(d) + eps);
    for (int64_t i = 0; i < d; ++i) {
      const float normed = bf16_value(round_bf16(bf16_value(hr[i]) * inv));
      y[r * d + i] = round_bf16(bf16_value(weight[i]) * normed);
    }
  }
}

}  // namespace flamingo::kernels::cuda
