// Host-side parts of kernels/cuda/skinny_product.h: the launch plan and the CPU reference of
// the kernel's summation order (compiled by the C++ compiler; no CUDA needed).
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>

#include "kernels/cuda/bf16_bits.h"
#include "kernels/cuda/skinny_product.h"

namespace flamingo::kernels::cuda {
namespace {

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

SkinnyPlan skinny_bf16_plan(int64_t m, int64_t n, int64_t k, const void* x, const void* w) {
  if (m < 0 || n < 0 || k < 0) {
    throw std::invalid_argument("skinny_bf16_plan: negative size (m=" + std::to_string(m) +
                                " n=" + std::to_string(n) + " k=" + std::to_string(k) + ")");
  }
  if (m > std::numeric_limits<int32_t>::max() || n > std::numeric_limits<int32_t>::max()) {
    throw std::invalid_argument("skinny_bf16_plan: m=" + std::to_string(m) + " rows, n=" +
                                std::to_string(n) + " columns: at most 2147483647 each");
  }
  SkinnyPlan p;
  p.threads = 32 * kSkinnyWarps;
  p.blocks = (n + kSkinnyWarps - 1) / kSkinnyWarps;
  p.vectorized = k % 8 == 0 && aligned16(x) && aligned16(w);
  return p;
}

void skinny_bf16_reference(const uint16_t* x, int64_t m, const uint16_t* w, int64_t n, int64_t k,
                           float* y, bool vectorized) {
  for (int64_t col = 0; col < n; ++col) {
    const uint16_t* wr = w + col * k;
    for (int64_t r = 0; r < m; ++r) {
      const uint16_t* xr = x + r * k;
      float lane[32] = {};
      for (int l = 0; l < 32; ++l) {
        if (vectorized) {
          for (int64_t k0 = 8 * l; k0 < k; k0 += 256) {
            for (int e = 0; e < 8; ++e) {
              lane[l] = std::fma(bf16_value(xr[k0 + e]), bf16_value(wr[k0 + e]), lane[l]);
            }
          }
        } else {
          for (int64_t kk = l; kk < k; kk += 32) {
            lane[l] = std::fma(bf16_value(xr[kk]), bf16_value(wr[kk]), lane[l]);
          }
        }
      }
      for (int o = 16; o >= 1; o /= 2) {
        float next[32];
        for (int l = 0; l < 32; ++l) next[l] = lane[l] + lane[l ^ o];
        std::memcpy(lane, next, sizeof lane);
      }
      y[r * n + col] = lane[0];
    }
  }
}

}  // namespace flamingo::kernels::cuda
