// SwiGLU's gating kernel and launcher (kernels/cuda/swiglu.h has the contract). Compiled with
// -fmad=false (kernels/cuda/cuda_kernels.cmake): exp_float's multiplies and adds stay separate,
// as on the CPU.
#include "kernels/cuda/bf16_device.cuh"
#include "kernels/cuda/swiglu.h"
#include "kernels/exp_float.h"

namespace flamingo::kernels::cuda {
namespace {

__global__ void swiglu_kernel(const uint16_t* g, const uint16_t* u, uint16_t* y, long long n) {
  const long long i = static_cast<long long>(blockIdx.x) * kElementwiseThreads + threadIdx.x;
  if (i >= n) return;
  const float gf = bf16_value(g[i]);
  const float silu = rounded_bf16(__fdiv_rn(gf, 1.f + exp_float(-gf)));
  y[i] = round_bf16(silu * bf16_value(u[i]));
}

}  // namespace

void swiglu(const uint16_t* g, const uint16_t* u, uint16_t* y, int64_t n, void* stream) {
  const int64_t blocks = elementwise_blocks(n, "swiglu");
  if (n == 0) return;
  swiglu_kernel<<<static_cast<unsigned>(blocks), kElementwiseThreads, 0,
                  static_cast<cudaStream_t>(stream)>>>(g, u, y, n);
  check_launch("swiglu");
}

}  // namespace flamingo::kernels::cuda
