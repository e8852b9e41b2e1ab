// The rotary embedding kernel and launcher (kernels/cuda/rotary.h has the contract). Compiled
// with -fmad=false (kernels/cuda/cuda_kernels.cmake): no product is fused into the sum.
#include "kernels/cuda/bf16_device.cuh"
#include "kernels/cuda/rotary.h"
#include "kernels/cuda/swiglu.h"  // kElementwiseThreads, elementwise_blocks

namespace flamingo::kernels::cuda {
namespace {

// Thread p: pair i = p % half of row p / half (row = token * heads + head).
__global__ void rotary_kernel(const uint16_t* x, const uint16_t* cos, const uint16_t* sin,
                              uint16_t* y, long long pairs, int heads, int half) {
  const long long p = static_cast<long long>(blockIdx.x) * kElementwiseThreads + threadIdx.x;
  if (p >= pairs) return;
  const long long row = p / half;
  const int i = static_cast<int>(p % half);
  const long long t = row / heads;
  const uint16_t* xr = x + row * 2 * half;
  const uint16_t* c = cos + t * 2 * half;
  const uint16_t* s = sin + t * 2 * half;
  const float lo = bf16_value(xr[i]), hi = bf16_value(xr[i + half]);
  const float a0 = rounded_bf16(__fmul_rn(lo, bf16_value(c[i])));
  const float b0 = rounded_bf16(__fmul_rn(-hi, bf16_value(s[i])));
  const float a1 = rounded_bf16(__fmul_rn(hi, bf16_value(c[i + half])));
  const float b1 = rounded_bf16(__fmul_rn(lo, bf16_value(s[i + half])));
  uint16_t* yr = y + row * 2 * half;
  yr[i] = round_bf16(__fadd_rn(a0, b0));
  yr[i + half] = round_bf16(__fadd_rn(a1, b1));
}

}  // namespace

void rotary(const uint16_t* x, const uint16_t* cos, const uint16_t* sin, uint16_t* y,
            int64_t tokens, int64_t heads, int64_t d, void* stream) {
  check_rotary_sizes(tokens, heads, d);
  const int64_t pairs = tokens * heads * (d / 2);
  if (pairs == 0) return;
  const int64_t blocks = elementwise_blocks(pairs, "rotary");
  rotary_kernel<<<static_cast<unsigned>(blocks), kElementwiseThreads, 0,
                  static_cast<cudaStream_t>(stream)>>>(
      x, cos, sin, y, pairs, static_cast<int>(heads), static_cast<int>(d / 2));
  check_launch("rotary");
}

}  // namespace flamingo::kernels::cuda
