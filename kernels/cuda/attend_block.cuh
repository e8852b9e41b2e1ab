// The body of one (query row, head) block of the CUDA attention kernels and their launch
// (kernels/cuda/attention.h has the order of every sum). Included by paged_attention.cu and
// cross_attention.cu, which differ only in where key and value j of a row live.
#pragma once

#include <stdexcept>
#include <string>

#include "kernels/cuda/attention.h"
#include "kernels/cuda/bf16_device.cuh"
#include "kernels/exp_float.h"

namespace flamingo::kernels::cuda::attend_detail {

constexpr int kPerLane = static_cast<int>(kMaxAttentionHeadDim / 32);

__device__ __forceinline__ float butterfly_sum(float v) {
#pragma unroll
  for (int o = 16; o >= 1; o /= 2) v = __fadd_rn(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

__device__ __forceinline__ float butterfly_max(float v) {
#pragma unroll
  for (int o = 16; o >= 1; o /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// out [d] = softmax(q . k_j x scale) . v_j over j < keys; kv.key(j) / kv.value(j) point at the d
// elements of key / value j. Dynamic shared memory: max_keys scores, then kAttentionWarps x d
// value sums. Every thread of the block calls it with the same arguments.
template <class KV>
__device__ void attend(const uint16_t* __restrict__ q, int d, float scale, int keys, int max_keys,
                       const KV& kv, uint16_t* __restrict__ out) {
  extern __shared__ float shared[];
  float* scores = shared;
  float* part = shared + max_keys;
  __shared__ float warp_max[kAttentionWarps], warp_sum[kAttentionWarps];
  __shared__ float inv_shared;
  const int t = threadIdx.x, lane = t & 31, warp = t >> 5;
  if (keys > max_keys) {  // the caller's max was wrong: NaN, not a wrong answer
    for (int i = t; i < d; i += kAttentionThreads) out[i] = 0x7fc0;
    return;
  }
  float qf[kPerLane];
#pragma unroll
  for (int c = 0; c < kPerLane; ++c) {
    const int i = lane + 32 * c;
    qf[c] = i < d ? __fmul_rn(bf16_value(q[i]), scale) : 0.f;
  }
  for (int j = warp; j < keys; j += kAttentionWarps) {
    const uint16_t* k = kv.key(j);
    float p = 0.f;
#pragma unroll
    for (int c = 0; c < kPerLane; ++c) {
      const int i = lane + 32 * c;
      if (i < d) p = __fmaf_rn(qf[c], bf16_value(k[i]), p);
    }
    p = butterfly_sum(p);
    if (lane == 0) scores[j] = p;
  }
  __syncthreads();
  float m = -__int_as_float(0x7f800000);
  for (int j = t; j < keys; j += kAttentionThreads) m = fmaxf(m, scores[j]);
  m = butterfly_max(m);
  if (lane == 0) warp_max[warp] = m;
  __syncthreads();
#pragma unroll
  for (int w = 0; w < kAttentionWarps; ++w) m = fmaxf(m, warp_max[w]);
  float sum = 0.f;
  for (int j = t; j < keys; j += kAttentionThreads) {
    const float e = exp_float(__fsub_rn(scores[j], m));
    scores[j] = e;
    sum = __fadd_rn(sum, e);
  }
  sum = butterfly_sum(sum);
  if (lane == 0) warp_sum[warp] = sum;
  __syncthreads();  // the e_j and the warps' sums
  if (warp == 0) {
    const float total = butterfly_sum(lane < kAttentionWarps ? warp_sum[lane] : 0.f);
    if (lane == 0) inv_shared = total > 0.f ? __fdiv_rn(1.f, total) : 0.f;
  }
  float acc[kPerLane];
#pragma unroll
  for (int c = 0; c < kPerLane; ++c) acc[c] = 0.f;
  for (int j = warp; j < keys; j += kAttentionWarps) {
    const float e = scores[j];
    const uint16_t* v = kv.value(j);
#pragma unroll
    for (int c = 0; c < kPerLane; ++c) {
      const int i = lane + 32 * c;
      if (i < d) acc[c] = __fmaf_rn(e, bf16_value(v[i]), acc[c]);
    }
  }
#pragma unroll
  for (int c = 0; c < kPerLane; ++c) {
    const int i = lane + 32 * c;
    if (i < d) part[warp * d + i] = acc[c];
  }
  __syncthreads();
  const float inv = inv_shared;
  for (int i = t; i < d; i += kAttentionThreads) {
    float a = part[i];
    for (int w = 1; w < kAttentionWarps; ++w) a = __fadd_rn(a, part[w * d + i]);
    out[i] = round_bf16(__fmul_rn(a, inv));
  }
}

inline void check_cuda(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    throw std::runtime_error(std::string(what) + ": " + cudaGetErrorName(e) + ": " +
                             cudaGetErrorString(e));
  }
}

// The plan on the current device, with the kernel allowed that much dynamic shared memory.
template <class Kernel>
AttentionPlan plan_on_device(Kernel kernel, int64_t rows, int64_t heads, int64_t d,
                             int64_t max_keys, const char* what) {
  int device = 0, limit = 0;
  check_cuda(cudaGetDevice(&device), what);
  check_cuda(cudaDeviceGetAttribute(&limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, device), what);
  const AttentionPlan p = attention_plan(rows, heads, d, max_keys, limit);
  check_cuda(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                  static_cast<int>(p.shared_bytes)),
             what);
  return p;
}

}  // namespace flamingo::kernels::cuda::attend_detail
