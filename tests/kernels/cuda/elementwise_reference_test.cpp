// The CPU references of the decoder's data-movement kernels (kernels/cuda/elementwise.h):
// rounding to bfloat16 (nearest even, ties, overflow), gathers and scatters by index, the
// gated add's two roundings, and errors for bad sizes. The GPU kernels are compared with them
// bit for bit in elementwise_gpu_test (label gpu).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <vector>

#include "kernels/cuda/bf16_bits.h"
#include "kernels/cuda/elementwise.h"

namespace flamingo::kernels::cuda {
namespace {

TEST(ElementwiseReference, ToBf16RoundsToNearestEven) {
  const std::vector<float> x = {1.f,   1.f + 0x1p-8f, 1.f + 3 * 0x1p-8f,
                                -2.5f, 0x1p-130f,     std::numeric_limits<float>::max()};
  std::vector<uint16_t> y(x.size());
  to_bf16_reference(x.data(), y.data(), static_cast<int64_t>(x.size()));
  EXPECT_EQ(y[0], 0x3f80);
  EXPECT_EQ(y[1], 0x3f80);  // a tie to even: down
  EXPECT_EQ(y[2], 0x3f82);  // a tie to even: up
  EXPECT_EQ(bf16_value(y[3]), -2.5f);
  EXPECT_GT(bf16_value(y[4]), 0.f);  // subnormals kept
  EXPECT_TRUE(std::isinf(bf16_value(y[5])));
}

TEST(ElementwiseReference, GatherAndScatterRows) {
  const std::vector<uint16_t> table = {1, 2, 3, 4, 5, 6};  // 3 rows of 2
  const std::vector<int32_t> idx = {2, 0, 2};
  std::vector<uint16_t> out(6);
  gather_rows_reference(table.data(), 2, idx.data(), 3, out.data());
  EXPECT_EQ(out, (std::vector<uint16_t>{5, 6, 1, 2, 5, 6}));
  std::vector<uint16_t> dst(8, 0);
  const std::vector<int32_t> slots = {3, 1};
  scatter_rows_reference(table.data(), 2, slots.data(), 2, dst.data());
  EXPECT_EQ(dst, (std::vector<uint16_t>{0, 0, 3, 4, 0, 0, 1, 2}));
}

TEST(ElementwiseReference, GatedAddRoundsTheProductThenTheSum) {
  const float g = 0.3f, y = 1.7f, h = 100.f;
  std::vector<uint16_t> hv = {round_bf16(h), round_bf16(h)}, yv = {round_bf16(y), round_bf16(y)};
  const std::vector<uint16_t> gate = {round_bf16(g)};
  gated_add_reference(hv.data(), gate.data(), 1, yv.data(), 1, 2);
  const float gy = bf16_value(round_bf16(bf16_value(gate[0]) * bf16_value(yv[0])));
  EXPECT_EQ(hv[0], round_bf16(bf16_value(round_bf16(h)) + gy));
  std::vector<uint16_t> plain = {round_bf16(h)};
  gated_add_reference(plain.data(), nullptr, 0, yv.data(), 1, 1);
  EXPECT_EQ(plain[0], round_bf16(bf16_value(round_bf16(h)) + bf16_value(yv[0])));
  std::vector<uint16_t> per = {round_bf16(1.f), round_bf16(1.f)};
  const std::vector<uint16_t> gates = {round_bf16(0.f), round_bf16(1.f)};
  gated_add_reference(per.data(), gates.data(), 2, yv.data(), 1, 2);
  EXPECT_EQ(bf16_value(per[0]), 1.f);
  EXPECT_EQ(per[1], round_bf16(1.f + bf16_value(yv[1])));
}

TEST(ElementwiseReference, BadSizesAreErrors) {
  EXPECT_THROW(to_bf16_reference(nullptr, nullptr, -1), std::invalid_argument);
  EXPECT_THROW(gather_rows_reference(nullptr, -1, nullptr, 1, nullptr), std::invalid_argument);
  EXPECT_THROW(gated_add_reference(nullptr, nullptr, 3, nullptr, 1, 4), std::invalid_argument);
  EXPECT_NO_THROW(gated_add_reference(nullptr, nullptr, 1, nullptr, 0, 4));
}

}  // namespace
}  // namespace flamingo::kernels::cuda
