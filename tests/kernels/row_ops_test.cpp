// rms_norm, rotary and swiglu against the LibTorch compositions they replace: rotary
// bit-identical over shapes and both dtypes; rms_norm within a few units in the last place (its
// variance is summed in float64, LibTorch's in float32) and swiglu too (its own exp), both
// also against float64; swiglu's edges (overflowing exp, infinities, NaN) as LibTorch; rows
// alone or in a batch give the same bits; swiglu's AVX2 loop gives the portable bits; argument
// errors.
#include "kernels/row_ops.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "kernels/cpu_isa.h"
#include "kernels/thread_pool.h"

namespace flamingo::kernels {
namespace {

at::Tensor rms_norm_composition(const at::Tensor& x, const at::Tensor& w, double eps) {
  const at::Tensor xf = x.to(at::kFloat);
  const at::Tensor variance = xf.pow(2).mean(-1, /*keepdim=*/true);
  return w * (xf * at::rsqrt(variance + eps)).to(w.scalar_type());
}

at::Tensor rotary_composition(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  const int64_t half = x.size(-1) / 2;
  const at::Tensor rotated = at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
  return x * cos.unsqueeze(1) + rotated * sin.unsqueeze(1);
}

std::string what(at::ScalarType dtype, const at::IntArrayRef& sizes) {
  std::ostringstream s;
  s << dtype << " " << sizes;
  return s.str();
}

TEST(Rotary, SameBitsAsTheLibTorchComposition) {
  at::manual_seed(31);
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    for (int64_t t : {1, 5}) {
      for (int64_t h : {1, 3}) {
        for (int64_t d : {2, 8, 64, 128}) {
          const at::Tensor x = (at::randn({t, h, d}) * 3).to(dtype);
          const at::Tensor cos = at::randn({t, d}).to(dtype), sin = at::randn({t, d}).to(dtype);
          EXPECT_TRUE(at::equal(rotary(x, cos, sin), rotary_composition(x, cos, sin)))
              << what(dtype, x.sizes());
        }
      }
    }
  }
}

TEST(RmsNorm, WithinUnitsInTheLastPlaceOfTheLibTorchComposition) {
  at::manual_seed(32);
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    // float32: the variance's last bit moves the result by a few units; bfloat16: by at most
    // one (when x * r falls next to a rounding boundary of the cast, rarely).
    const double ulps = dtype == at::kFloat ? 4 : 1;
    const double eps_t = dtype == at::kFloat ? 0x1p-23 : 0x1p-7;
    for (int64_t rows : {1, 7}) {
      for (int64_t d : {1, 64, 1024, 4096}) {
        const at::Tensor x = (at::randn({rows, d}) * 2).to(dtype);
        const at::Tensor w = (at::rand({d}) + 0.5).to(dtype);
        const at::Tensor ours = rms_norm(x, w, 1e-6).to(at::kDouble);
        const at::Tensor lib = rms_norm_composition(x, w, 1e-6).to(at::kDouble);
        const at::Tensor bound = lib.abs() * (ulps * eps_t) + 1e-30;
        EXPECT_LE(((ours - lib).abs() - bound).max().item<double>(), 0.0) << what(dtype, x.sizes());
        // And the float64 definition, within the output's own rounding (two casts).
        const at::Tensor xd = x.to(at::kDouble);
        const at::Tensor ref = w.to(at::kDouble) * xd * at::rsqrt(xd.pow(2).mean(-1, true) + 1e-6);
        EXPECT_LE(((ours - ref).abs() - ref.abs() * (3 * eps_t) - 1e-30).max().item<double>(), 0.0)
            << what(dtype, x.sizes());
      }
    }
  }
}

TEST(RmsNorm, RowsAloneOrInABatchGiveTheSameBits) {
  at::manual_seed(33);
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    const at::Tensor x = at::randn({9, 3, 128}).to(dtype), w = at::randn({128}).to(dtype);
    const at::Tensor all = rms_norm(x, w, 1e-5);
    for (int64_t r = 0; r < 9; ++r) {
      EXPECT_TRUE(at::equal(rms_norm(x[r], w, 1e-5), all[r])) << dtype << " row " << r;
    }
  }
}

// float32: the exp here is within 2 units in the last place, SLEEF's within 1, and the
// division and the product add their roundings: within 6 units of LibTorch's result and of
// float64. bfloat16: silu is computed in float32 and rounded once, then the product rounded
// (two roundings of 2^-9 relative: within 1.25 units of 2^-7 of float64); Debian's LibTorch
// 1.13 rounds silu's exp, sum and quotient to bfloat16 one by one (measured: 1.5 units from
// float64), so the two differ by up to 2 units, in about a quarter of the elements.
TEST(Swiglu, WithinUnitsInTheLastPlaceOfTheLibTorchCompositionAndOfFloat64) {
  at::manual_seed(34);
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    const bool f32 = dtype == at::kFloat;
    const double unit = f32 ? 0x1p-23 : 0x1p-7;
    const double vs_lib = f32 ? 6 : 2, vs_f64 = f32 ? 6 : 1.25;
    for (int64_t n : {1, 7, 2816, 16 * 2816}) {
      const at::Tensor g = (at::randn({n}) * 6).to(dtype), u = at::randn({n}).to(dtype);
      const at::Tensor ours = swiglu(g, u).to(at::kDouble);
      const at::Tensor lib = (at::silu(g) * u).to(at::kDouble);
      EXPECT_LE(((ours - lib).abs() - lib.abs() * (vs_lib * unit) - 1e-30).max().item<double>(), 0)
          << dtype << " n " << n;
      const at::Tensor gd = g.to(at::kDouble);
      const at::Tensor ref = gd / (1 + at::exp(-gd)) * u.to(at::kDouble);
      EXPECT_LE(((ours - ref).abs() - ref.abs() * (vs_f64 * unit) - 1e-30).max().item<double>(), 0)
          << dtype << " n " << n;
    }
  }
}

TEST(Swiglu, EdgesAsLibTorch) {
  const std::vector<float> edges = {-1e30f,
                                    -100.f,
                                    -88.8f,
                                    -88.7f,
                                    -87.4f,
                                    -87.3f,
                                    -20.f,
                                    -1e-30f,
                                    0.f,
                                    -0.f,
                                    1e-30f,
                                    20.f,
                                    87.3f,
                                    88.7f,
                                    88.8f,
                                    100.f,
                                    1e30f,
                                    std::numeric_limits<float>::infinity(),
                                    -std::numeric_limits<float>::infinity()};
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    const at::Tensor g = at::tensor(edges).to(dtype), u = at::ones({int64_t(edges.size())}, dtype);
    const at::Tensor ours = swiglu(g, u).to(at::kDouble), lib = (at::silu(g) * u).to(at::kDouble);
    for (size_t i = 0; i < edges.size(); ++i) {
      const double a = ours[i].item<double>(), b = lib[i].item<double>();
      if (std::isnan(b)) {
        EXPECT_TRUE(std::isnan(a)) << dtype << " gate " << edges[i];
      } else if (std::isinf(b)) {
        EXPECT_EQ(a, b) << dtype << " gate " << edges[i];
      } else {
        EXPECT_NEAR(a, b, std::abs(b) * 4e-7 + 1e-37) << dtype << " gate " << edges[i];
      }
    }
    const at::Tensor nan = at::full({3}, std::nanf(""), dtype);
    EXPECT_TRUE(at::isnan(swiglu(nan, at::ones({3}, dtype))).all().item<bool>()) << dtype;
  }
}

TEST(Swiglu, Avx2LoopsGiveThePortableBits) {
  if (cpu_isa() < Isa::kAvx2) GTEST_SKIP() << "no AVX2 here";
  at::manual_seed(35);
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    for (int64_t n : {1, 8, 13, 2816}) {
      at::Tensor g = (at::randn({n}) * 30).to(dtype);
      g[0] = 89.f;  // past exp's range on both sides
      if (n > 1) g[1] = -89.f;
      const at::Tensor u = at::randn({n}).to(dtype);
      const at::Tensor vec = swiglu(g, u);
      set_forced_isa(Isa::kScalar);
      const at::Tensor plain = swiglu(g, u);
      reset_forced_isa();
      EXPECT_TRUE(at::equal(vec, plain)) << dtype << " n " << n;
    }
  }
}

TEST(RmsNormAndRotary, Avx2LoopsGiveThePortableBits) {
  if (cpu_isa() < Isa::kAvx2) GTEST_SKIP() << "no AVX2 here";
  at::manual_seed(36);
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    for (int64_t d : {1, 8, 13, 64, 1027, 4096}) {
      const at::Tensor x = (at::randn({5, d}) * 4).to(dtype), w = at::randn({d}).to(dtype);
      const at::Tensor vec = rms_norm(x, w, 1e-6);
      set_forced_isa(Isa::kScalar);
      const at::Tensor plain = rms_norm(x, w, 1e-6);
      reset_forced_isa();
      EXPECT_TRUE(at::equal(vec, plain)) << "rms_norm " << dtype << " d " << d;
    }
    for (int64_t d : {2, 16, 64, 128}) {  // 16 and up: half a multiple of 8, the AVX2 loop
      const at::Tensor x = (at::randn({3, 4, d}) * 3).to(dtype);
      const at::Tensor cos = at::randn({3, d}).to(dtype), sin = at::randn({3, d}).to(dtype);
      const at::Tensor vec = rotary(x, cos, sin);
      set_forced_isa(Isa::kScalar);
      const at::Tensor plain = rotary(x, cos, sin);
      reset_forced_isa();
      EXPECT_TRUE(at::equal(vec, plain)) << "rotary " << dtype << " d " << d;
    }
  }
}

// Rows split across the kernel pool's threads (large inputs) give the bits of one thread.
TEST(RowOps, ThreadCountDoesNotChangeTheBits) {
  at::manual_seed(37);
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    const at::Tensor x = (at::randn({33, 1024}) * 2).to(dtype), w = at::randn({1024}).to(dtype);
    const at::Tensor g = (at::randn({33, 2816}) * 4).to(dtype), u = at::randn({33, 2816}).to(dtype);
    const at::Tensor q = at::randn({33, 16, 64}).to(dtype);
    const at::Tensor cos = at::randn({33, 64}).to(dtype), sin = at::randn({33, 64}).to(dtype);
    const int threads = kernel_threads();
    set_kernel_threads(1);
    const at::Tensor n1 = rms_norm(x, w, 1e-6), s1 = swiglu(g, u), r1 = rotary(q, cos, sin);
    set_kernel_threads(3);
    EXPECT_TRUE(at::equal(rms_norm(x, w, 1e-6), n1)) << dtype;
    EXPECT_TRUE(at::equal(swiglu(g, u), s1)) << dtype;
    EXPECT_TRUE(at::equal(rotary(q, cos, sin), r1)) << dtype;
    set_kernel_threads(threads);
  }
}

TEST(RowOps, ArgumentErrors) {
  const at::Tensor x = at::randn({2, 4, 8});
  EXPECT_THROW(rms_norm(x.to(at::kDouble), at::ones({8}, at::kDouble), 1e-6), c10::Error);
  EXPECT_THROW(rms_norm(x, at::ones({7}), 1e-6), c10::Error);
  EXPECT_THROW(rms_norm(x, at::ones({8}, at::kBFloat16), 1e-6), c10::Error);
  EXPECT_THROW(rotary(x, at::ones({2, 6}), at::ones({2, 6})), c10::Error);
  EXPECT_THROW(rotary(x.narrow(2, 0, 7), at::ones({2, 7}), at::ones({2, 7})), c10::Error);
  EXPECT_THROW(rotary(x, at::ones({2, 8}, at::kBFloat16), at::ones({2, 8}, at::kBFloat16)),
               c10::Error);
  EXPECT_THROW(swiglu(x, x.narrow(2, 0, 7)), c10::Error);
  EXPECT_THROW(swiglu(x, x.to(at::kBFloat16)), c10::Error);
  EXPECT_THROW(swiglu(x.to(at::kDouble), x.to(at::kDouble)), c10::Error);
}

}  // namespace
}  // namespace flamingo::kernels
