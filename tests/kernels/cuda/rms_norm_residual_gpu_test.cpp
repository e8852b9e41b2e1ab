// The fused residual add + RMSNorm CUDA kernel (kernels/cuda/rms_norm_residual.cu) on the GPU:
// the output and the residual written back equal the CPU reference of its order bit for bit,
// over d below, at and above one block's width, with and without the residual add. Label gpu:
// skipped, saying why, where no CUDA device answers.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/cuda/rms_norm_residual.h"
#include "tests/kernels/cuda/cuda_test_util.h"
#include "tests/kernels/cuda/gpu_test.h"

namespace flamingo::kernels::cuda {
namespace {

using testing::GpuTest;
using testing::random_bf16;
using RmsNormResidualGpu = GpuTest;

uint16_t* upload(const std::vector<uint16_t>& v) {
  uint16_t* d = nullptr;
  EXPECT_EQ(cudaMalloc(&d, (v.size() + 1) * 2), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(d, v.data(), v.size() * 2, cudaMemcpyHostToDevice), cudaSuccess);
  return d;
}
std::vector<uint16_t> download(const uint16_t* d, size_t n) {
  std::vector<uint16_t> v(n);
  EXPECT_EQ(cudaMemcpy(v.data(), d, n * 2, cudaMemcpyDeviceToHost), cudaSuccess);
  return v;
}

TEST_F(RmsNormResidualGpu, EqualsTheCpuReferenceBitForBit) {
  std::mt19937 rng(61);
  for (bool with_delta : {true, false}) {
    for (int64_t d : {1, 7, 255, 256, 257, 1024, 4096, 11008}) {
      const int64_t rows = 5;
      std::vector<uint16_t> h = random_bf16(rows * d, rng), delta = random_bf16(rows * d, rng);
      const std::vector<uint16_t> w = random_bf16(d, rng, 0.1f, 1.f);
      std::vector<uint16_t> y(rows * d);
      uint16_t *dh = upload(h), *dd = upload(delta), *dw = upload(w), *dy = upload(y);
      rms_norm_residual(dh, with_delta ? dd : nullptr, dw, dy, rows, d, 1e-6f, nullptr);
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      rms_norm_residual_reference(h.data(), with_delta ? delta.data() : nullptr, w.data(), y.data(),
                                  rows, d, 1e-6f);
      EXPECT_EQ(download(dh, h.size()), h) << "d=" << d << " delta=" << with_delta;
      EXPECT_EQ(download(dy, y.size()), y) << "d=" << d << " delta=" << with_delta;
      for (uint16_t* p : {dh, dd, dw, dy}) cudaFree(p);
    }
  }
}

}  // namespace
}  // namespace flamingo::kernels::cuda
