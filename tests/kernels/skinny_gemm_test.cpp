// skinny_gemm against a float64 matmul over a grid of shapes (both the AVX2 and the scalar
// kernel); batch invariance: row r of an M-row product is bit-identical to the product of row r
// alone, to every prefix of the batch, and under any thread count; tails that must not read
// past a row; non-contiguous inputs; empty shapes; argument errors.
#include "kernels/skinny_gemm.h"

#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <cstring>
#include <limits>
#include <string>
#include <vector>

namespace flamingo::kernels {
namespace {

// Restores the intra-op thread count a test changes.
class ThreadCountGuard {
 public:
  ThreadCountGuard() : saved_(at::get_num_threads()) {}
  ~ThreadCountGuard() { at::set_num_threads(saved_); }

 private:
  int saved_;
};

std::vector<SkinnyIsa> isas() {
  std::vector<SkinnyIsa> v{SkinnyIsa::kScalar};
  if (skinny_gemm_has_avx2()) v.push_back(SkinnyIsa::kAuto);
  return v;
}

std::string name(SkinnyIsa isa) { return isa == SkinnyIsa::kScalar ? "scalar" : "auto"; }

// Float32 sums of K products in 8 lanes and a 3-level tree: random-sign rounding errors stay
// near sqrt(K / 8) * 2^-24 of sum |x||w| (about 1e-6 at K = 4096), well inside the tolerance
// 1e-5 * sum_k |x_mk| |w_nk| + 1e-6; a dropped or repeated product (about 1/K of the sum,
// 2.4e-4 at K = 4096) is well outside it.
void expect_matches_reference(const at::Tensor& y, const at::Tensor& x, const at::Tensor& w,
                              const std::string& what) {
  const at::Tensor xd = x.to(at::kDouble), wd = w.to(at::kDouble);
  const at::Tensor ref = at::matmul(xd, wd.t());
  ASSERT_EQ(y.sizes(), ref.sizes()) << what;
  ASSERT_EQ(y.scalar_type(), at::kFloat) << what;
  const at::Tensor bound = at::matmul(xd.abs(), wd.abs().t()) * 1e-5 + 1e-6;
  const at::Tensor excess = (y.to(at::kDouble) - ref).abs() - bound;
  EXPECT_LE(excess.max().item<double>(), 0.0) << what;
}

bool bit_equal(const at::Tensor& a, const at::Tensor& b) {
  const at::Tensor ac = a.contiguous(), bc = b.contiguous();
  return ac.sizes() == bc.sizes() &&
         std::memcmp(ac.data_ptr<float>(), bc.data_ptr<float>(), ac.numel() * sizeof(float)) == 0;
}

TEST(SkinnyGemm, MatchesFloat64ReferenceOverShapeGrid) {
  at::manual_seed(7);
  for (SkinnyIsa isa : isas()) {
    for (int64_t k : {1, 7, 8, 64, 100, 1024, 1031, 4096}) {
      for (int64_t n : {1, 3, 4, 5, 64, 257, 1000}) {
        const at::Tensor w = at::randn({n, k});
        for (int64_t m : {1, 2, 3, 4, 5, 7, 8, 13, 16, 31, 32}) {
          const at::Tensor x = at::randn({m, k});
          expect_matches_reference(skinny_gemm(x, w, isa), x, w,
                                   name(isa) + " M=" + std::to_string(m) +
                                       " K=" + std::to_string(k) + " N=" + std::to_string(n));
        }
      }
    }
  }
}

TEST(SkinnyGemm, MoreRowsThanOneGroup) {
  at::manual_seed(8);
  const at::Tensor w = at::randn({37, 1031}), x = at::randn({70, 1031});
  for (SkinnyIsa isa : isas()) {
    const at::Tensor y = skinny_gemm(x, w, isa);
    expect_matches_reference(y, x, w, name(isa));
    EXPECT_TRUE(bit_equal(y[69], skinny_gemm(x.narrow(0, 69, 1), w, isa)[0])) << name(isa);
  }
}

// The server batches the decode steps of unrelated requests: each request's rows must come out
// exactly as they would alone.
TEST(SkinnyGemm, RowsAreBitIdenticalAloneInAnyBatchAndUnderAnyThreadCount) {
  ThreadCountGuard guard;
  at::manual_seed(9);
  for (int64_t k : {100, 1031, 4096}) {
    const at::Tensor w = at::randn({1001, k}), x = at::randn({32, k});
    for (SkinnyIsa isa : isas()) {
      const std::string what = name(isa) + " K=" + std::to_string(k);
      at::set_num_threads(1);
      const at::Tensor full = skinny_gemm(x, w, isa);
      for (int64_t r = 0; r < 32; ++r) {
        EXPECT_TRUE(bit_equal(skinny_gemm(x.narrow(0, r, 1), w, isa)[0], full[r]))
            << what << " row " << r << " alone";
      }
      for (int64_t m = 1; m <= 32; ++m) {  // every register blocking of the rows
        EXPECT_TRUE(bit_equal(skinny_gemm(x.narrow(0, 0, m), w, isa), full.narrow(0, 0, m)))
            << what << " first " << m << " rows";
      }
      // The same row among other rows, at another position.
      const at::Tensor shuffled = at::cat({x.narrow(0, 20, 5), x.narrow(0, 3, 1)});
      EXPECT_TRUE(bit_equal(skinny_gemm(shuffled, w, isa)[5], full[3])) << what;
      for (int threads : {2, 3, 4}) {
        at::set_num_threads(threads);
        EXPECT_TRUE(bit_equal(skinny_gemm(x, w, isa), full)) << what << " threads " << threads;
        EXPECT_TRUE(bit_equal(skinny_gemm(x.narrow(0, 11, 1), w, isa)[0], full[11]))
            << what << " threads " << threads << " row alone";
      }
    }
  }
}

// The K % 8 tail must read nothing past a row: the tensors below are views whose next row (or
// next floats in memory) hold NaN.
TEST(SkinnyGemm, TailReadsNothingPastTheRow) {
  at::manual_seed(10);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (int64_t k : {1, 5, 13, 1031}) {
    at::Tensor wbuf = at::randn({6, k}), xbuf = at::randn({4, k});
    wbuf[5].fill_(nan);
    xbuf[3].fill_(nan);
    const at::Tensor w = wbuf.narrow(0, 0, 5), x = xbuf.narrow(0, 0, 3);  // contiguous views
    ASSERT_TRUE(w.is_contiguous() && x.is_contiguous());
    for (SkinnyIsa isa : isas()) {
      const at::Tensor y = skinny_gemm(x, w, isa);
      EXPECT_TRUE(at::isfinite(y).all().item<bool>()) << name(isa) << " K=" << k;
      expect_matches_reference(y, x, w, name(isa) + " K=" + std::to_string(k));
    }
  }
}

TEST(SkinnyGemm, NonContiguousInputsEqualTheirContiguousCopies) {
  at::manual_seed(11);
  const at::Tensor x = at::randn({100, 5}).t();                   // [5, 100], strides (1, 5)
  const at::Tensor w = at::randn({100, 37}).t();                  // [37, 100]
  const at::Tensor xs = at::randn({5, 200}).slice(1, 0, 200, 2);  // every other column
  ASSERT_FALSE(x.is_contiguous() || w.is_contiguous() || xs.is_contiguous());
  for (SkinnyIsa isa : isas()) {
    EXPECT_TRUE(bit_equal(skinny_gemm(x, w, isa), skinny_gemm(x.contiguous(), w.contiguous(), isa)))
        << name(isa);
    EXPECT_TRUE(bit_equal(skinny_gemm(xs, w, isa), skinny_gemm(xs.contiguous(), w, isa)))
        << name(isa);
    expect_matches_reference(skinny_gemm(x, w, isa), x, w, name(isa));
  }
}

TEST(SkinnyGemm, EmptyShapes) {
  for (SkinnyIsa isa : isas()) {
    const at::Tensor zero_k = skinny_gemm(at::empty({3, 0}), at::empty({4, 0}), isa);
    ASSERT_EQ(zero_k.sizes(), (at::IntArrayRef{3, 4}));
    EXPECT_EQ(zero_k.abs().max().item<float>(), 0.f) << name(isa);
    EXPECT_EQ(skinny_gemm(at::empty({0, 8}), at::randn({4, 8}), isa).sizes(),
              (at::IntArrayRef{0, 4}));
    EXPECT_EQ(skinny_gemm(at::randn({2, 8}), at::empty({0, 8}), isa).sizes(),
              (at::IntArrayRef{2, 0}));
  }
}

TEST(SkinnyGemm, RejectsBadArguments) {
  const at::Tensor w = at::randn({4, 8});
  EXPECT_THROW(skinny_gemm(at::randn({8}), w), c10::Error);  // x not 2-D
  EXPECT_THROW(skinny_gemm(at::randn({2, 8}), at::randn({8})), c10::Error);
  EXPECT_THROW(skinny_gemm(at::randn({2, 7}), w), c10::Error);  // K mismatch
  EXPECT_THROW(skinny_gemm(at::randn({2, 8}, at::kDouble), w), c10::Error);
  EXPECT_THROW(skinny_gemm(at::randn({2, 8}), w.to(at::kBFloat16)), c10::Error);
}

}  // namespace
}  // namespace flamingo::kernels
