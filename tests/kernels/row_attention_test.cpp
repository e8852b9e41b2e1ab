// row_attention against a float64 softmax attention over a grid of shapes and both dtypes;
// a row's result is bit-identical alone or among any number of other rows, under 1 and 2
// threads, and on the AVX2 and portable loops; row_attention_groups gives each row the bits
// of row_attention on its group alone; argument errors.
#include "kernels/row_attention.h"

#include <gtest/gtest.h>

#include <cstring>

#include "kernels/cpu_isa.h"
#include "kernels/thread_pool.h"
#include "tests/kernels/kernel_test_util.h"

namespace flamingo::kernels {
namespace {

using testing::bit_equal;

at::Tensor reference(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, double scale) {
  const at::Tensor qd = q.to(at::kDouble).transpose(0, 1);                         // [H, R, D]
  const at::Tensor s = at::matmul(qd, k.to(at::kDouble).transpose(1, 2)) * scale;  // [H, R, L]
  return at::matmul(at::softmax(s, -1), v.to(at::kDouble)).transpose(0, 1);        // [R, H, D]
}

TEST(RowAttention, MatchesFloat64ReferenceOverShapes) {
  at::manual_seed(3);
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    // float32: rounding of sums of <= 128 terms, far below 1e-5; bfloat16: the output's own
    // rounding (2^-8 relative) dominates, so the bound is 1e-2 of the value scale.
    const double tol = dtype == at::kFloat ? 1e-5 : 2e-2;
    for (int64_t rows : {1, 3, 17}) {
      for (int64_t heads : {1, 4}) {
        for (int64_t len : {1, 8, 64}) {
          for (int64_t d : {7, 16, 96}) {
            const at::Tensor q = at::randn({rows, heads, d}).to(dtype);
            const at::Tensor k = at::randn({heads, len, d}).to(dtype);
            const at::Tensor v = at::randn({heads, len, d}).to(dtype);
            const double scale = 1.0 / std::sqrt(static_cast<double>(d));
            const at::Tensor got = row_attention(q, k, v, scale);
            ASSERT_EQ(got.scalar_type(), dtype);
            const double err =
                (got.to(at::kDouble) - reference(q, k, v, scale)).abs().max().item<double>();
            EXPECT_LE(err, tol) << dtype << " rows " << rows << " heads " << heads << " len " << len
                                << " d " << d;
          }
        }
      }
    }
  }
}

TEST(RowAttention, RowIsBitIdenticalAloneOrAmongOthersAndThreads) {
  const int saved = kernel_threads();
  at::manual_seed(4);
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    const at::Tensor q = at::randn({70, 8, 64}).to(dtype);
    const at::Tensor k = at::randn({8, 64, 64}).to(dtype), v = at::randn({8, 64, 64}).to(dtype);
    set_kernel_threads(1);
    std::vector<at::Tensor> alone;
    for (int64_t r = 0; r < 70; ++r) alone.push_back(row_attention(q.narrow(0, r, 1), k, v, 0.125));
    for (int threads : {1, 2}) {
      set_kernel_threads(threads);
      for (int64_t m : {2, 33, 70}) {
        const at::Tensor y = row_attention(q.narrow(0, 0, m), k, v, 0.125);
        for (int64_t r = 0; r < m; ++r) {
          ASSERT_TRUE(bit_equal(y.narrow(0, r, 1), alone[r]))
              << dtype << " m " << m << " row " << r;
        }
      }
    }
  }
  set_kernel_threads(saved);
}

// attend_row's AVX2 loops give the portable loops' bits (head dims with and without a tail
// past the last 8).
TEST(RowAttention, Avx2LoopsGiveThePortableBits) {
  if (cpu_isa() < Isa::kAvx2) GTEST_SKIP() << "no AVX2 here";
  at::manual_seed(5);
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    for (int64_t d : {5, 8, 64, 100}) {
      const at::Tensor q = at::randn({6, 3, d}).to(dtype);
      const at::Tensor k = at::randn({3, 37, d}).to(dtype), v = at::randn({3, 37, d}).to(dtype);
      const at::Tensor vec = row_attention(q, k, v, 0.3);
      set_forced_isa(Isa::kScalar);
      const at::Tensor plain = row_attention(q, k, v, 0.3);
      reset_forced_isa();
      EXPECT_TRUE(bit_equal(vec, plain)) << dtype << " d " << d;
    }
  }
}

// Groups of rows against their own keys and values (latent counts differ; one group is empty,
// rows before the first group are left alone): each row has the bits of row_attention on its
// group alone, under 1 and 2 threads.
TEST(RowAttention, GroupsGiveEachRowItsBitsAlone) {
  const int saved = kernel_threads();
  at::manual_seed(6);
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    const std::vector<int64_t> lens = {64, 1, 9, 64};
    std::vector<at::Tensor> ks, vs;
    for (int64_t len : lens) {
      ks.push_back(at::randn({4, len, 24}).to(dtype));
      vs.push_back(at::randn({4, len, 24}).to(dtype));
    }
    const std::vector<int64_t> begin = {2, 7, 7, 8, 40};
    const at::Tensor q = at::randn({40, 4, 24}).to(dtype);
    std::vector<RowAttentionKV> kv;
    for (size_t g = 0; g < lens.size(); ++g) kv.push_back({&ks[g], &vs[g]});
    for (int threads : {1, 2}) {
      set_kernel_threads(threads);
      at::Tensor out = at::full({40, 4, 24}, 7.0).to(dtype);
      row_attention_groups(q, kv, begin, 0.2, out);
      EXPECT_TRUE(bit_equal(out.narrow(0, 0, 2), at::full({2, 4, 24}, 7.0).to(dtype)));
      for (size_t g = 0; g < lens.size(); ++g) {
        for (int64_t r = begin[g]; r < begin[g + 1]; ++r) {
          const at::Tensor alone = row_attention(q.narrow(0, r, 1), ks[g], vs[g], 0.2);
          ASSERT_TRUE(bit_equal(out.narrow(0, r, 1), alone))
              << dtype << " threads " << threads << " group " << g << " row " << r;
        }
      }
    }
  }
  set_kernel_threads(saved);
}

TEST(RowAttention, ArgumentErrors) {
  const at::Tensor q = at::randn({2, 4, 8}), k = at::randn({4, 5, 8});
  EXPECT_THROW(row_attention(q, k, at::randn({4, 6, 8}), 1.0), c10::Error);
  EXPECT_THROW(row_attention(q, at::randn({3, 5, 8}), at::randn({3, 5, 8}), 1.0), c10::Error);
  EXPECT_THROW(row_attention(q.to(at::kBFloat16), k, k, 1.0), c10::Error);
  EXPECT_THROW(row_attention(at::randn({2, 4}), k, k, 1.0), c10::Error);
  at::Tensor out = at::empty({2, 4, 8});
  EXPECT_THROW(row_attention_groups(q, {{&k, &k}}, {0, 3}, 1.0, out), c10::Error);  // past R
  EXPECT_THROW(row_attention_groups(q, {{&k, &k}}, {0}, 1.0, out), c10::Error);     // bounds
  EXPECT_THROW(row_attention_groups(q, {{&k, &k}}, {2, 1}, 1.0, out), c10::Error);  // falling
  const at::Tensor strided = at::randn({4, 8, 5}).transpose(1, 2);
  EXPECT_THROW(row_attention_groups(q, {{&strided, &strided}}, {0, 2}, 1.0, out), c10::Error);
}

}  // namespace
}  // namespace flamingo::kernels
