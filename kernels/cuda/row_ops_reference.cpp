// Host-side parts of kernels/cuda/swiglu.h and kernels/cuda/rotary.h: size checks, the launch
// size and the CPU references (compiled by the C++ compiler; no CUDA needed).
#include <limits>
#include <stdexcept>
#include <string>

#include "kernels/cuda/bf16_bits.h"
#include "kernels/cuda/rotary.h"
#include "kernels/cuda/swiglu.h"
#include "kernels/exp_float.h"

namespace flamingo::kernels::cuda {

int64_t elementwise_blocks(int64_t work, const char* what) {
  if (work < 0) {
    throw std::invalid_argument(std::string(what) + ": negative size " + std::to_string(work));
  }
  const int64_t blocks = (work + kElementwiseThreads - 1) / kElementwiseThreads;
  if (blocks > std::numeric_limits<int32_t>::max()) {
    throw std::invalid_argument(std::string(what) + ": " + std::to_string(work) +
                                " items need more than 2147483647 blocks of " +
                                std::to_string(kElementwiseThreads));
  }
  return blocks;
}

void swiglu_reference(const uint16_t* g, const uint16_t* u, uint16_t* y, int64_t n) {
  elementwise_blocks(n, "swiglu");
  for (int64_t i = 0; i < n; ++i) {
    const float gf = bf16_value(g[i]);
    const float silu = bf16_value(round_bf16(gf / (1.f + exp_float(-gf))));
    y[i] = round_bf16(silu * bf16_value(u[i]));
  }
}

void check_rotary_sizes(int64_t tokens, int64_t heads, int64_t d) {
  if (tokens < 0 || heads < 0 || d < 2 || d % 2 != 0) {
    throw std::invalid_argument(
        "rotary: need tokens >= 0, heads >= 0 and an even d >= 2, got "
        "tokens=" +
        std::to_string(tokens) + " heads=" + std::to_string(heads) + " d=" + std::to_string(d));
  }
  if (heads > std::numeric_limits<int32_t>::max() || d > std::numeric_limits<int32_t>::max()) {
    throw std::invalid_argument("rotary: heads=" + std::to_string(heads) +
                                " d=" + std::to_string(d) + ": at most 2147483647 each");
  }
  if (heads > 0 && tokens > std::numeric_limits<int64_t>::max() / heads / d) {
    throw std::invalid_argument(
        "rotary: tokens x heads x d overflows (tokens=" + std::to_string(tokens) +
        " heads=" + std::to_string(heads) + " d=" + std::to_string(d) + ")");
  }
  elementwise_blocks(tokens * heads * (d / 2), "rotary");
}

void rotary_reference(const uint16_t* x, const uint16_t* cos, const uint16_t* sin, uint16_t* y,
                      int64_t tokens, int64_t heads, int64_t d) {
  check_rotary_sizes(tokens, heads, d);
  const int64_t half = d / 2;
  for (int64_t t = 0; t < tokens; ++t) {
    const uint16_t* c = cos + t * d;
    const uint16_t* s = sin + t * d;
    for (int64_t h = 0; h < heads; ++h) {
      const uint16_t* xr = x + (t * heads + h) * d;
      uint16_t* yr = y + (t * heads + h) * d;
      for (int64_t i = 0; i < half; ++i) {
        const float lo = bf16_value(xr[i]), hi = bf16_value(xr[i + half]);
        const float a0 = bf16_value(round_bf16(lo * bf16_value(c[i])));
        const float b0 = bf16_value(round_bf16(-hi * bf16_value(s[i])));
        const float a1 = bf16_value(round_bf16(hi * bf16_value(c[i + half])));
        const float b1 = bf16_value(round_bf16(lo * bf16_value(s[i + half])));
        yr[i] = round_bf16(a0 + b0);
        yr[i + half] = round_bf16(a1 + b1);
      }
    }
  }
}

}  // namespace flamingo::kernels::cuda
