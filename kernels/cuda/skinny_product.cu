// The skinny bfloat16 weight product's kernel and launcher (kernels/cuda/skinny_product.h has
// the contract and the summation order).
#include "kernels/cuda/bf16_device.cuh"
#include "kernels/cuda/skinny_product.h"

namespace flamingo::kernels::cuda {
namespace {

constexpr int kRowTile = 8;  // rows whose sums a lane holds at once

// 8 bfloat16 in a uint4 -> float, in K order (little-endian: the low half first).
__device__ __forceinline__ void unpack8(const uint4 v, float (&f)[8]) {
  const uint32_t u[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    f[2 * i] = bf16_value(u[i] & 0xffffu);
    f[2 * i + 1] = bf16_value(u[i] >> 16);
  }
}

template <bool kVectorized>
__global__ void skinny_bf16_kernel(const uint16_t* __restrict__ x, int m,
                                   const uint16_t* __restrict__ w, int n, long long k,
                                   float* __restrict__ y) {
  const int lane = threadIdx.x & 31;
  const long long col = static_cast<long long>(blockIdx.x) * kSkinnyWarps + (threadIdx.x >> 5);
  if (col >= n) return;  // the whole warp leaves together
  const uint16_t* wr = w + col * k;
  for (int r0 = 0; r0 < m; r0 += kRowTile) {
    const int rows = min(kRowTile, m - r0);
    float acc[kRowTile];
#pragma unroll
    for (int r = 0; r < kRowTile; ++r) acc[r] = 0.f;
    if constexpr (kVectorized) {
      for (long long k0 = 8LL * lane; k0 < k; k0 += 256) {
        float wf[8];
        unpack8(__ldg(reinterpret_cast<const uint4*>(wr + k0)), wf);
#pragma unroll
        for (int r = 0; r < kRowTile; ++r) {
          if (r < rows) {
            float xf[8];
            unpack8(__ldg(reinterpret_cast<const uint4*>(x + (r0 + r) * k + k0)), xf);
#pragma unroll
            for (int e = 0; e < 8; ++e) acc[r] = __fmaf_rn(xf[e], wf[e], acc[r]);
          }
        }
      }
    } else {
      for (long long kk = lane; kk < k; kk += 32) {
        const float wf = bf16_value(wr[kk]);
#pragma unroll
        for (int r = 0; r < kRowTile; ++r) {
          if (r < rows) acc[r] = __fmaf_rn(bf16_value(x[(r0 + r) * k + kk]), wf, acc[r]);
        }
      }
    }
#pragma unroll
    for (int r = 0; r < kRowTile; ++r) {
      if (r < rows) {
        float v = acc[r];
#pragma unroll
        for (int o = 16; o >= 1; o /= 2) v = __fadd_rn(v, __shfl_xor_sync(0xffffffffu, v, o));
        if (lane == 0) y[(r0 + r) * static_cast<long long>(n) + col] = v;
      }
    }
  }
}

}  // namespace

void skinny_bf16_product(const uint16_t* x, int64_t m, const uint16_t* w, int64_t n, int64_t k,
                         float* y, void* stream) {
  const SkinnyPlan p = skinny_bf16_plan(m, n, k, x, w);
  if (m == 0 || n == 0) return;
  auto s = static_cast<cudaStream_t>(stream);
  if (p.vectorized) {
    skinny_bf16_kernel<true><<<static_cast<unsigned>(p.blocks), p.threads, 0, s>>>(
        x, static_cast<int>(m), w, static_cast<int>(n), k, y);
  } else {
    skinny_bf16_kernel<false><<<static_cast<unsigned>(p.blocks), p.threads, 0, s>>>(
        x, static_cast<int>(m), w, static_cast<int>(n), k, y);
  }
  check_launch("skinny_bf16_product");
}

}  // namespace flamingo::kernels::cuda
