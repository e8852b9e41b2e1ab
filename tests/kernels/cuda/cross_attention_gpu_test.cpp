// The cross-attention CUDA kernel (kernels/cuda/cross_attention.cu) on the GPU: rows against
// groups of image K/V of different lengths equal the CPU reference bit for bit; rows without a
// group are left as they were; a row's bits the same alone as among others. Label gpu:
// skipped, saying why, where no CUDA device answers.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

#include "kernels/cuda/attention.h"
#include "tests/kernels/cuda/cuda_test_util.h"
#include "tests/kernels/cuda/gpu_test.h"

namespace flamingo::kernels::cuda {
namespace {

using testing::from_device;
using testing::random_bf16;
using testing::to_device;
using CrossAttentionGpu = testing::GpuTest;

TEST_F(CrossAttentionGpu, EqualsTheCpuReferenceBitForBit) {
  std::mt19937 rng(111);
  for (int64_t d : {16, 64, 128}) {
    const int64_t heads = 4;
    const std::vector<int32_t> len = {64, 128, 1, 320};
    std::vector<std::vector<uint16_t>> k, v;
    std::vector<const uint16_t*> hk, hv, dk, dv;
    for (int32_t l : len) {
      k.push_back(random_bf16(heads * l * d, rng));
      v.push_back(random_bf16(heads * l * d, rng));
      hk.push_back(k.back().data());
      hv.push_back(v.back().data());
      dk.push_back(to_device(k.back()));
      dv.push_back(to_device(v.back()));
    }
    const std::vector<int32_t> group = {-1, 0, 1, 0, 2, -1, 3, 1};
    const int64_t rows = static_cast<int64_t>(group.size());
    const std::vector<uint16_t> q = random_bf16(rows * heads * d, rng, 3.f);
    std::vector<uint16_t> want(q.size(), 0x7777);
    cross_attention_reference(q.data(), rows, heads, d, group.data(), hk.data(), hv.data(),
                              len.data(), 0.125f, want.data());
    const uint16_t* const* dkp = to_device(dk);
    const uint16_t* const* dvp = to_device(dv);
    int32_t *dg = to_device(group), *dl = to_device(len);
    uint16_t *dq = to_device(q), *dout = to_device(std::vector<uint16_t>(q.size(), 0x7777));
    cross_attention(dq, rows, heads, d, dg, dkp, dvp, dl, 320, 0.125f, dout, nullptr);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    EXPECT_EQ(from_device(dout, q.size()), want) << "d=" << d;
    // Row 6 alone (its group only).
    uint16_t* dout1 = to_device(std::vector<uint16_t>(heads * d));
    int32_t* dg1 = to_device(std::vector<int32_t>{3});
    cross_attention(dq + 6 * heads * d, 1, heads, d, dg1, dkp, dvp, dl, 320, 0.125f, dout1,
                    nullptr);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    const std::vector<uint16_t> alone = from_device(dout1, heads * d);
    EXPECT_TRUE(std::equal(alone.begin(), alone.end(), want.begin() + 6 * heads * d)) << "d=" << d;
    for (const uint16_t* p : dk) cudaFree(const_cast<uint16_t*>(p));
    for (const uint16_t* p : dv) cudaFree(const_cast<uint16_t*>(p));
    cudaFree(const_cast<const uint16_t**>(dkp));
    cudaFree(const_cast<const uint16_t**>(dvp));
    for (void* p : {static_cast<void*>(dg), static_cast<void*>(dl), static_cast<void*>(dq),
                    static_cast<void*>(dout), static_cast<void*>(dout1), static_cast<void*>(dg1)}) {
      cudaFree(p);
    }
  }
}

}  // namespace
}  // namespace flamingo::kernels::cuda
