// The rotary embedding CUDA kernel (kernels/cuda/rotary.cu) on the GPU: equal to its CPU
// reference (the CPU kernel's bits, row_ops_reference_test) bit for bit over head sizes of the
// models here, in place too. Label gpu: skipped, saying why, where no CUDA device answers.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <vector>

#include "kernels/cuda/rotary.h"
#include "tests/kernels/cuda/cuda_test_util.h"
#include "tests/kernels/cuda/gpu_test.h"

namespace flamingo::kernels::cuda {
namespace {

using testing::from_device;
using testing::random_bf16;
using testing::to_device;
using RotaryGpu = testing::GpuTest;

TEST_F(RotaryGpu, EqualsTheCpuReferenceBitForBit) {
  std::mt19937 rng(92);
  for (int64_t d : {2, 6, 32, 64, 128}) {
    for (int64_t tokens : {1, 7, 64}) {
      const int64_t heads = 5;
      const std::vector<uint16_t> x = random_bf16(tokens * heads * d, rng);
      const std::vector<uint16_t> c = random_bf16(tokens * d, rng, 0.7f),
                                  s = random_bf16(tokens * d, rng, 0.7f);
      std::vector<uint16_t> want(x.size());
      rotary_reference(x.data(), c.data(), s.data(), want.data(), tokens, heads, d);
      uint16_t *dx = to_device(x), *dc = to_device(c), *ds = to_device(s),
               *dy = to_device(std::vector<uint16_t>(x.size()));
      rotary(dx, dc, ds, dy, tokens, heads, d, nullptr);
      rotary(dx, dc, ds, dx, tokens, heads, d, nullptr);  // in place
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      EXPECT_EQ(from_device(dy, x.size()), want) << "d=" << d << " tokens=" << tokens;
      EXPECT_EQ(from_device(dx, x.size()), want) << "in place, d=" << d;
      for (uint16_t* p : {dx, dc, ds, dy}) cudaFree(p);
    }
  }
}

TEST_F(RotaryGpu, NothingToDoAndBadSizes) {
  EXPECT_NO_THROW(rotary(nullptr, nullptr, nullptr, nullptr, 0, 4, 64, nullptr));
  EXPECT_THROW(rotary(nullptr, nullptr, nullptr, nullptr, 1, 4, 63, nullptr),
               std::invalid_argument);
}

}  // namespace
}  // namespace flamingo::kernels::cuda
