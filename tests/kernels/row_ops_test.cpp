// rms_norm and rotary against the LibTorch compositions they replace: rotary bit-identical
// over shapes and both dtypes; rms_norm within a few units in the last place (its variance is
// summed in float64, LibTorch's in float32), and against a float64 reference; rows alone or in
// a batch give the same bits; argument errors.
#include "kernels/row_ops.h"

#include <gtest/gtest.h>

#include <sstream>
#include <string>

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

TEST(RowOps, ArgumentErrors) {
  const at::Tensor x = at::randn({2, 4, 8});
  EXPECT_THROW(rms_norm(x.to(at::kDouble), at::ones({8}, at::kDouble), 1e-6), c10::Error);
  EXPECT_THROW(rms_norm(x, at::ones({7}), 1e-6), c10::Error);
  EXPECT_THROW(rms_norm(x, at::ones({8}, at::kBFloat16), 1e-6), c10::Error);
  EXPECT_THROW(rotary(x, at::ones({2, 6}), at::ones({2, 6})), c10::Error);
  EXPECT_THROW(rotary(x.narrow(2, 0, 7), at::ones({2, 7}), at::ones({2, 7})), c10::Error);
  EXPECT_THROW(rotary(x, at::ones({2, 8}, at::kBFloat16), at::ones({2, 8}, at::kBFloat16)),
               c10::Error);
}

}  // namespace
}  // namespace flamingo::kernels
