// The CPU references of the CUDA SwiGLU and rotary kernels (kernels/cuda/row_ops_reference.cpp)
// give the CPU kernels' bits (kernels/row_ops.h, themselves checked against LibTorch in
// tests/kernels/row_ops_test.cpp), so the GPU kernels, equal to the references bit for bit
// (swiglu_gpu_test, rotary_gpu_test; label gpu), give the CPU's bits too. Bad sizes are errors.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <stdexcept>
#include <vector>

#include "kernels/cuda/rotary.h"
#include "kernels/cuda/swiglu.h"
#include "kernels/row_ops.h"
#include "tests/kernels/cuda/cuda_test_util.h"

namespace flamingo::kernels::cuda {
namespace {

using testing::random_bf16;

at::Tensor as_tensor(const std::vector<uint16_t>& v, at::IntArrayRef shape) {
  at::Tensor t = at::empty(shape, at::kBFloat16);
  std::memcpy(t.data_ptr(), v.data(), v.size() * 2);
  return t;
}
std::vector<uint16_t> bits(const at::Tensor& t) {
  const at::Tensor c = t.contiguous();
  std::vector<uint16_t> v(c.numel());
  std::memcpy(v.data(), c.data_ptr(), v.size() * 2);
  return v;
}

TEST(SwigluReference, SameBitsAsTheCpuKernel) {
  std::mt19937 rng(71);
  for (float scale : {1.f, 8.f, 40.f}) {
    const int64_t n = 10007;
    const std::vector<uint16_t> g = random_bf16(n, rng, scale), u = random_bf16(n, rng, 2.f);
    std::vector<uint16_t> y(n);
    swiglu_reference(g.data(), u.data(), y.data(), n);
    EXPECT_EQ(y, bits(kernels::swiglu(as_tensor(g, {n}), as_tensor(u, {n})))) << "scale " << scale;
  }
}

TEST(RotaryReference, SameBitsAsTheCpuKernel) {
  std::mt19937 rng(72);
  for (int64_t d : {2, 6, 16, 64, 128}) {
    const int64_t tokens = 5, heads = 3;
    const std::vector<uint16_t> x = random_bf16(tokens * heads * d, rng);
    const std::vector<uint16_t> c = random_bf16(tokens * d, rng, 0.7f),
                                s = random_bf16(tokens * d, rng, 0.7f);
    std::vector<uint16_t> y(x.size());
    rotary_reference(x.data(), c.data(), s.data(), y.data(), tokens, heads, d);
    const at::Tensor want = kernels::rotary(as_tensor(x, {tokens, heads, d}),
                                            as_tensor(c, {tokens, d}), as_tensor(s, {tokens, d}));
    EXPECT_EQ(y, bits(want)) << "d=" << d;
  }
}

TEST(RowOpsReference, BadSizesAreErrors) {
  EXPECT_THROW(swiglu_reference(nullptr, nullptr, nullptr, -1), std::invalid_argument);
  EXPECT_THROW(rotary_reference(nullptr, nullptr, nullptr, nullptr, 1, 1, 3),
               std::invalid_argument);
  EXPECT_THROW(rotary_reference(nullptr, nullptr, nullptr, nullptr, -1, 1, 4),
               std::invalid_argument);
  EXPECT_THROW(check_rotary_sizes(1, int64_t{1} << 40, 4), std::invalid_argument);
  EXPECT_NO_THROW(check_rotary_sizes(0, 0, 2));
  EXPECT_EQ(elementwise_blocks(0, "x"), 0);
  EXPECT_EQ(elementwise_blocks(kElementwiseThreads + 1, "x"), 2);
  try {
    elementwise_blocks(int64_t{1} << 42, "swiglu");
    FAIL() << "no error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("swiglu"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace flamingo::kernels::cuda
