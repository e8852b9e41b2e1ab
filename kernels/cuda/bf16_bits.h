// bfloat16 bit patterns on the host, for the CUDA kernels' CPU references and tests: the exact
// float value of a bfloat16, and float -> bfloat16 rounded to nearest even (as CUDA's
// __float2bfloat16_rn for finite values and infinities; a NaN stays a NaN).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace flamingo::kernels::cuda {

inline float bf16_value(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

inline uint16_t round_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  if (std::isnan(f)) return static_cast<uint16_t>(u >> 16 | 0x40);
  u += 0x7fffu + (u >> 16 & 1u);
  return static_cast<uint16_t>(u >> 16);
}

}  // namespace flamingo::kernels::cuda
