// The contract every bfloat16 x bfloat16 weight product path keeps (kernels/amx_product.h on
// AMX tiles, kernels/bf16_dot_product.h on vdpbf16ps), checked for one of them: within a
// float64 product's rounding bound over a grid of shapes, bit-identical rows alone or in any
// batch and thread count, a row independent of the others, weight_product routing only
// bfloat16 x with bfloat16 weights to it on its Isa, empty shapes.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/cpu_isa.h"
#include "kernels/packed_weight.h"
#include "kernels/thread_pool.h"
#include "kernels/weight_product.h"
#include "tests/kernels/kernel_test_util.h"

namespace flamingo::kernels::testing {

// y [m, w.n] float32 = x (bfloat16 bits) W^T, W bfloat16.
using Bf16ProductFn = void (*)(const uint16_t* x, int64_t m, const WeightView& w, float* y);

// y [m, n] float32 from a raw entry point.
inline at::Tensor run_product(Bf16ProductFn fn, const at::Tensor& x, const PackedWeight& w) {
  const at::Tensor xc = x.contiguous();
  at::Tensor y = at::full({x.size(0), w.rows()}, -7.f);  // every element must be written
  fn(reinterpret_cast<const uint16_t*>(xc.data_ptr()), x.size(0), w.view(), y.data_ptr<float>());
  return y;
}

inline PackedWeight bf16_weight(int64_t n, int64_t k) {
  return PackedWeight::from_dense(at::randn({n, k}).to(at::kBFloat16), WeightType::kBFloat16);
}

inline std::string shape_label(int64_t m, int64_t n, int64_t k) {
  return "m=" + std::to_string(m) + " n=" + std::to_string(n) + " k=" + std::to_string(k);
}

// The products of bfloat16 values are exact in float32, so the only error is the float32
// additions': however the hardware orders them inside a chunk of 32 K, each sum of at most kp
// terms (K padded to 32) is within kp * 2^-24 * sum |x||w| of the exact sum (the worst case of
// recursive summation). A dropped or repeated product (about 1/K of the sum) is far outside.
// K and N off the tile and vector sizes, 1..70 rows.
inline void expect_matches_float64_reference(Bf16ProductFn fn) {
  at::manual_seed(21);
  for (int64_t k : {1, 2, 15, 31, 32, 33, 64, 100, 513, 1031}) {
    const int64_t kp = (k + 31) / 32 * 32;
    for (int64_t n : {1, 7, 16, 17, 33, 47, 64, 100}) {
      const PackedWeight w = bf16_weight(n, k);
      const at::Tensor wd = w.dequantize().to(at::kDouble);
      for (int64_t m : {1, 2, 3, 5, 15, 16, 17, 31, 33, 49, 70}) {
        const at::Tensor x = at::randn({m, k}).to(at::kBFloat16);
        const at::Tensor xd = x.to(at::kDouble);
        const at::Tensor ref = at::matmul(xd, wd.t());
        const at::Tensor bound =
            at::matmul(xd.abs(), wd.abs().t()) * (static_cast<double>(kp) * 0x1p-24) + 1e-30;
        const at::Tensor excess = (run_product(fn, x, w).to(at::kDouble) - ref).abs() - bound;
        EXPECT_LE(excess.max().item<double>(), 0.0) << shape_label(m, n, k);
      }
    }
  }
}

// Row r of any batch equals row r alone, bit for bit: batches of 1..70 rows (any register or
// tile block, several K tiles, several row groups), under 1, 2 and 3 threads; K and N off the
// tile sizes so that the padded tails take part.
inline void expect_rows_bit_identical_alone_or_in_any_batch(Bf16ProductFn fn) {
  PoolGuard guard;
  at::manual_seed(22);
  const int64_t k = 1000, n = 150;
  const at::Tensor x = at::randn({70, k}).to(at::kBFloat16);
  const PackedWeight w = bf16_weight(n, k);
  set_kernel_threads(1);
  std::vector<at::Tensor> alone;
  for (int64_t r = 0; r < 70; ++r) alone.push_back(run_product(fn, x.narrow(0, r, 1), w));
  for (int threads : {1, 2, 3}) {
    set_kernel_threads(threads);
    for (int64_t m = 1; m <= 70; ++m) {
      const at::Tensor y = run_product(fn, x.narrow(0, 0, m), w);
      for (int64_t r = 0; r < m; ++r) {
        ASSERT_TRUE(bit_equal(y.narrow(0, r, 1), alone[r]))
            << shape_label(m, n, k) << " row " << r << " threads " << threads;
      }
    }
  }
}

// Big enough (m x n x k >= 2^18) to be split over the pool: the split changes nothing.
inline void expect_split_over_threads_gives_the_same_bits(Bf16ProductFn fn) {
  PoolGuard guard;
  at::manual_seed(23);
  const PackedWeight w = bf16_weight(1000, 768);
  const at::Tensor x = at::randn({40, 768}).to(at::kBFloat16);
  set_kernel_threads(1);
  const at::Tensor one = run_product(fn, x, w);
  set_kernel_threads(4);
  EXPECT_TRUE(bit_equal(run_product(fn, x, w), one));
  EXPECT_TRUE(bit_equal(run_product(fn, x.narrow(0, 39, 1), w), one.narrow(0, 39, 1)));
}

inline void expect_row_independent_of_the_other_rows(Bf16ProductFn fn) {
  at::manual_seed(24);
  const PackedWeight w = bf16_weight(40, 256);
  at::Tensor x = at::randn({20, 256}).to(at::kBFloat16);
  const at::Tensor before = run_product(fn, x, w);
  x.narrow(0, 0, 4).mul_(1000.f);
  x.narrow(0, 5, 15).zero_();
  EXPECT_TRUE(bit_equal(before[4], run_product(fn, x, w)[4]));
}

// weight_product on `isa` runs fn for bfloat16 x with bfloat16 weights (the bias added in
// float32, rounded once), and the float32 path (Isa::kAvx512Vnni's bits) below `isa`, for
// float32 x, and for float32 weights.
inline void expect_weight_product_routes_to_it(Bf16ProductFn fn, Isa isa) {
  at::manual_seed(25);
  const PackedWeight w = bf16_weight(24, 80);
  const at::Tensor x = at::randn({3, 80}).to(at::kBFloat16), b = at::randn({24});
  EXPECT_TRUE(
      bit_equal(weight_product(x, w, b, isa), run_product(fn, x, w).add(b).to(at::kBFloat16)));
  EXPECT_TRUE(
      bit_equal(weight_product(x, w, {}, Isa::kAvx512Vnni),
                weight_product(x.to(at::kFloat), w, {}, Isa::kAvx512Vnni).to(at::kBFloat16)));
  EXPECT_TRUE(bit_equal(weight_product(x.to(at::kFloat), w, {}, isa),
                        weight_product(x.to(at::kFloat), w, {}, Isa::kAvx512Vnni)));
  const PackedWeight wf = PackedWeight::from_dense(w.dequantize(), WeightType::kFloat32);
  EXPECT_TRUE(
      bit_equal(weight_product(x, wf, {}, isa), weight_product(x, wf, {}, Isa::kAvx512Vnni)));
}

inline void expect_empty_shapes_handled(Bf16ProductFn fn) {
  const PackedWeight w = bf16_weight(5, 0);
  const at::Tensor x = at::randn({3, 0}).to(at::kBFloat16);
  EXPECT_EQ(run_product(fn, x, w).abs().sum().item<float>(), 0.f);
  at::Tensor y = at::full({1, 1}, 3.f);
  fn(nullptr, 0, bf16_weight(1, 4).view(), y.data_ptr<float>());
  EXPECT_EQ(y.item<float>(), 3.f);
}

}  // namespace flamingo::kernels::testing
