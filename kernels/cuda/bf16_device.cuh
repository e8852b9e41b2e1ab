// Shared by the CUDA kernels' sources: bfloat16 bits <-> float32 on the device (exact widening;
// narrowing to nearest even, as kernels/cuda/bf16_bits.h does on the host for finite values),
// and the launch check every launcher ends with.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace flamingo::kernels::cuda {

__device__ __forceinline__ float bf16_value(uint32_t bits16) {
  return __uint_as_float(bits16 << 16);
}
__device__ __forceinline__ uint16_t round_bf16(float f) {
  return __bfloat16_as_ushort(__float2bfloat16_rn(f));
}
// The value a float32 result has once stored as bfloat16.
__device__ __forceinline__ float rounded_bf16(float f) { return bf16_value(round_bf16(f)); }

// Throws std::runtime_error naming `what` and the CUDA error if the last launch failed.
inline void check_launch(const char* what) {
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) {
    throw std::runtime_error(std::string(what) + ": " + cudaGetErrorName(e) + ": " +
                             cudaGetErrorString(e));
  }
}

}  // namespace flamingo::kernels::cuda
