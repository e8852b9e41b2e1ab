// exp(x) in float32 with the same bits on every CPU and on an NVIDIA GPU: kernels/row_ops.cpp's
// SwiGLU (portable and AVX2), the CUDA kernels (kernels/cuda, compiled with -fmad=false so that
// nvcc contracts no multiply and add into an FMA) and their CPU references call this one
// definition. x = n ln2 + r (Cody-Waite, |r| <= ln2 / 2 + ulp), exp(r) by Cephes' degree-6
// polynomial, times 2^n built in the exponent bits (as 2^(n >> 1) x 2^(n - (n >> 1)), so that
// n = 128 stays finite); +inf above 88.72, 0 below -87.33 (no subnormal results). Separate
// multiplies and adds, each rounded (no FMA). Torch-free.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define FLAMINGO_HOST_DEVICE __host__ __device__
#else
#define FLAMINGO_HOST_DEVICE
#endif

namespace flamingo::kernels::exp_detail {

constexpr float kExpHi = 88.72f, kExpLo = -87.33f, kLog2e = 1.44269504088896341f;
constexpr float kRound = 12582912.f;  // 1.5 x 2^23: (t + it) - it rounds t to an integer
constexpr float kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;
constexpr float kP0 = 1.9875691500e-4f, kP1 = 1.3981999507e-3f, kP2 = 8.3334519073e-3f,
                kP3 = 4.1665795894e-2f, kP4 = 1.6666665459e-1f, kP5 = 5.0000001201e-1f;

FLAMINGO_HOST_DEVICE inline float float_from_bits(uint32_t b) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(b);
#else
  float f;
  std::memcpy(&f, &b, sizeof f);
  return f;
#endif
}

}  // namespace flamingo::kernels::exp_detail

namespace flamingo::kernels {

FLAMINGO_HOST_DEVICE inline float exp_float(float x) {
  using namespace exp_detail;
  const float xc = x < kExpLo ? kExpLo : x > kExpHi ? kExpHi : x;
  const float n = (xc * kLog2e + kRound) - kRound;
  const float r = (xc - n * kLn2Hi) - n * kLn2Lo;
  float p = kP0;
  p = p * r + kP1;
  p = p * r + kP2;
  p = p * r + kP3;
  p = p * r + kP4;
  p = p * r + kP5;
  p = p * (r * r) + r + 1.f;
  const int32_t ni = static_cast<int32_t>(n), half = ni >> 1;
  const float s1 = float_from_bits(static_cast<uint32_t>(half + 127) << 23);
  const float s2 = float_from_bits(static_cast<uint32_t>(ni - half + 127) << 23);
  const float e = p * s1 * s2;
  return x > kExpHi ? float_from_bits(0x7f800000u) : x < kExpLo ? 0.f : e;
}

}  // namespace flamingo::kernels
