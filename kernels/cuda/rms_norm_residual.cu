// The fused residual add + RMSNorm kernel and launcher (kernels/cuda/rms_norm_residual.h has
// the contract and the order of the sums).
#include "kernels/cuda/bf16_device.cuh"
#include "kernels/cuda/rms_norm_residual.h"

namespace flamingo::kernels::cuda {
namespace {

__device__ __forceinline__ float butterfly(float v) {
#pragma unroll
  for (int o = 16; o >= 1; o /= 2) v = __fadd_rn(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

__global__ void rms_norm_residual_kernel(uint16_t* __restrict__ h,
                                         const uint16_t* __restrict__ delta,
                                         const uint16_t* __restrict__ weight,
                                         uint16_t* __restrict__ y, long long d, float eps) {
  __shared__ float warp_sums[32];
  __shared__ float inv_shared;
  uint16_t* hr = h + static_cast<long long>(blockIdx.x) * d;
  const uint16_t* dr = delta != nullptr ? delta + static_cast<long long>(blockIdx.x) * d : nullptr;
  uint16_t* yr = y + static_cast<long long>(blockIdx.x) * d;
  const int t = threadIdx.x, lane = t & 31, warp = t >> 5;
  float part = 0.f;
  for (long long i = t; i < d; i += kRmsThreads) {
    uint16_t s = hr[i];
    if (dr != nullptr) {
      s = round_bf16(__fadd_rn(bf16_value(s), bf16_value(dr[i])));
      hr[i] = s;
    }
    const float v = bf16_value(s);
    part = __fmaf_rn(v, v, part);
  }
  const float ws = butterfly(part);
  if (lane == 0) warp_sums[warp] = ws;
  __syncthreads();
  if (warp == 0) {
    const float total = butterfly(lane < kRmsThreads / 32 ? warp_sums[lane] : 0.f);
    if (lane == 0) {
      inv_shared =
          __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn(__fdiv_rn(total, static_cast<float>(d)), eps)));
    }
  }
  __syncthreads();
  const float inv = inv_shared;
  for (long long i = t; i < d; i += kRmsThreads) {
    const float normed = bf16_value(round_bf16(__fmul_rn(bf16_value(hr[i]), inv)));
    yr[i] = round_bf16(__fmul_rn(bf16_value(weight[i]), normed));
  }
}

}  // namespace

void rms_norm_residual(uint16_t* h, const uint16_t* delta, const uint16_t* weight, uint16_t* y,
                       int64_t rows, int64_t d, float eps, void* stream) {
  check_rms_norm_sizes(rows, d);
  if (rows == 0) return;
  rms_norm_residual_kernel<<<static_cast<unsigned>(rows), kRmsThreads, 0,
                             static_cast<cudaStream_t>(stream)>>>(h, delta, weight, y, d, eps);
  check_launch("rms_norm_residual");
}

}  // namespace flamingo::kernels::cuda
