// SwiGLU's gating kernel and launcher (kernels/cuda/swiglu.h has the contract). Compiled with
// -fmad=false (kernels/cuda/cuda_kernels.cmake): exp_float's multiplies and adds stay separate,
// as on the CPU.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "kernels/cuda/swiglu.h"
#include "kernels/exp_float.h"

namespace flamingo::kernels::cuda {
namespace {

__device__ __forceinline__ float bf16_value(uint16_t b) {
  return __uint_as_float(static_cast<uint32_t>(b) << 16);
}
__device__ __forceinline__ uint16_t round_bf16(float f) {
  return __bfloat16_as_ushort(__float2bfloat16_rn(f));
}

__global__ void swiglu_kernel(const uint16_t* g, const uint16_t* u, uint16_t* y, long long n) {
  const long long i = static_cast<long long>(blockIdx.x) * kElementwiseThreads + threadIdx.x;
  if (i >= n) return;
  const float gf = bf16_value(g[i]);
  const float silu = bf16_value(round_bf16(__fdiv_rn(gf, 1.f + exp_float(-gf))));
  y[i] = round_bf16(silu * bf16_value(u[i]));
}

}  // namespace

void swiglu(const uint16_t* g, const uint16_t* u, uint16_t* y, int64_t n, void* stream) {
  const int64_t blocks = elementwise_blocks(n, "swiglu");
  if (n == 0) return;
  swiglu_kernel<<<static_cast<unsigned>(blocks), kElementwiseThreads, 0,
                  static_cast<cudaStream_t>(stream)>>>(g, u, y, n);
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) {
    throw std::runtime_error(std::string("swiglu: ") + cudaGetErrorName(e) + ": " +
                             cudaGetErrorString(e));
  }
}

}  // namespace flamingo::kernels::cuda
