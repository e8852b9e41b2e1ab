// The skinny CUDA product (kernels/cuda/skinny_product.cu) on the GPU: bit-identical to the
// CPU reference of its summation order (skinny_bf16_reference) over a grid of shapes, with
// 16-byte loads and without (K % 8 != 0, or pointers off 16-byte alignment); rows alone equal
// rows in batches of 1..70; k == 0 gives zeros, m == 0 writes nothing. Label gpu: skipped,
// saying why, where no CUDA device answers.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/cuda/skinny_product.h"
#include "tests/kernels/cuda/cuda_test_util.h"
#include "tests/kernels/cuda/gpu_test.h"

namespace flamingo::kernels::cuda {
namespace {

using testing::GpuTest;
using testing::random_bf16;
using SkinnyProductGpu = GpuTest;

// A device copy of `v` starting `offset` elements into its allocation (to test misalignment).
template <class T>
T* upload(const std::vector<T>& v, size_t offset = 0) {
  T* d = nullptr;
  EXPECT_EQ(cudaMalloc(&d, (v.size() + offset + 8) * sizeof(T)), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(d + offset, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice),
            cudaSuccess);
  return d + offset;
}

// y from the GPU for x [m, k], w [n, k] placed `offset` elements into their allocations.
std::vector<float> gpu(const std::vector<uint16_t>& x, int64_t m, const std::vector<uint16_t>& w,
                       int64_t n, int64_t k, size_t offset, bool* vectorized) {
  uint16_t* dx = upload(x, offset);
  uint16_t* dw = upload(w, offset);
  float* dy = nullptr;
  EXPECT_EQ(cudaMalloc(&dy, (m * n + 1) * sizeof(float)), cudaSuccess);
  EXPECT_EQ(cudaMemset(dy, 0xff, (m * n + 1) * sizeof(float)), cudaSuccess);
  *vectorized = skinny_bf16_plan(m, n, k, dx, dw).vectorized;
  skinny_bf16_product(dx, m, dw, n, k, dy, nullptr);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  std::vector<float> y(m * n);
  EXPECT_EQ(cudaMemcpy(y.data(), dy, m * n * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
  cudaFree(dx - offset);
  cudaFree(dw - offset);
  cudaFree(dy);
  return y;
}

TEST_F(SkinnyProductGpu, EqualsTheCpuReferenceBitForBit) {
  std::mt19937 rng(41);
  for (size_t offset : {size_t{0}, size_t{1}}) {
    for (int64_t k : {1, 8, 13, 256, 264, 1000, 4096, 11008}) {
      for (int64_t n : {1, 5, 33, 100}) {
        for (int64_t m : {1, 2, 7, 8, 9, 16, 33, 64}) {
          const auto x = random_bf16(m * k, rng), w = random_bf16(n * k, rng);
          bool vec = false;
          const std::vector<float> y = gpu(x, m, w, n, k, offset, &vec);
          std::vector<float> ref(m * n);
          skinny_bf16_reference(x.data(), m, w.data(), n, k, ref.data(), vec);
          ASSERT_EQ(std::memcmp(y.data(), ref.data(), y.size() * sizeof(float)), 0)
              << "m=" << m << " n=" << n << " k=" << k << " offset=" << offset << " vec=" << vec;
        }
      }
    }
  }
}

TEST_F(SkinnyProductGpu, RowsAloneEqualRowsInAnyBatch) {
  std::mt19937 rng(42);
  const int64_t n = 150, k = 4096;
  const auto x = random_bf16(70 * k, rng), w = random_bf16(n * k, rng);
  bool vec = false;
  const std::vector<float> all = gpu(x, 70, w, n, k, 0, &vec);
  for (int64_t m = 1; m <= 70; m += 3) {
    const std::vector<uint16_t> head(x.begin(), x.begin() + m * k);
    const std::vector<float> y = gpu(head, m, w, n, k, 0, &vec);
    ASSERT_EQ(std::memcmp(y.data(), all.data(), y.size() * sizeof(float)), 0) << "m=" << m;
  }
}

TEST_F(SkinnyProductGpu, EmptyShapes) {
  bool vec = false;
  const std::vector<float> y = gpu({}, 3, {}, 4, 0, 0, &vec);
  for (float v : y) EXPECT_EQ(v, 0.f);
  EXPECT_NO_THROW(skinny_bf16_product(nullptr, 0, nullptr, 4, 8, nullptr, nullptr));
}

}  // namespace
}  // namespace flamingo::kernels::cuda
