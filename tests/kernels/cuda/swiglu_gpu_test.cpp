// The SwiGLU CUDA kernel (kernels/cuda/swiglu.cu) on the GPU: equal to its CPU reference (the
// CPU kernel's bits, row_ops_reference_test) bit for bit, in place too. Label gpu: skipped,
// saying why, where no CUDA device answers.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <vector>

#include "kernels/cuda/swiglu.h"
#include "tests/kernels/cuda/cuda_test_util.h"
#include "tests/kernels/cuda/gpu_test.h"

namespace flamingo::kernels::cuda {
namespace {

using testing::from_device;
using testing::random_bf16;
using testing::to_device;
using SwigluGpu = testing::GpuTest;

TEST_F(SwigluGpu, EqualsTheCpuReferenceBitForBit) {
  std::mt19937 rng(91);
  for (int64_t n : {1, 255, 256, 257, 11008 * 3}) {
    for (float scale : {1.f, 40.f}) {
      const std::vector<uint16_t> g = random_bf16(n, rng, scale), u = random_bf16(n, rng);
      std::vector<uint16_t> want(n);
      swiglu_reference(g.data(), u.data(), want.data(), n);
      uint16_t *dg = to_device(g), *du = to_device(u), *dy = to_device(std::vector<uint16_t>(n));
      swiglu(dg, du, dy, n, nullptr);
      swiglu(dg, du, dg, n, nullptr);  // in place
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      EXPECT_EQ(from_device(dy, n), want) << "n=" << n << " scale=" << scale;
      EXPECT_EQ(from_device(dg, n), want) << "in place, n=" << n;
      for (uint16_t* p : {dg, du, dy}) cudaFree(p);
    }
  }
}

TEST_F(SwigluGpu, NothingToDoAndBadSizes) {
  EXPECT_NO_THROW(swiglu(nullptr, nullptr, nullptr, 0, nullptr));
  EXPECT_THROW(swiglu(nullptr, nullptr, nullptr, -1, nullptr), std::invalid_argument);
}

}  // namespace
}  // namespace flamingo::kernels::cuda
