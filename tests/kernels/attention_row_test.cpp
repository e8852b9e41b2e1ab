// attend_heads (several heads of one query token, each K/V row walked once for all of them)
// gives every head the bits attend_row gives it alone, on the AVX2 and the portable loops, over
// head counts around the 4-head dot blocks, head dims with and without a tail of 8, and
// contexts across the value-row chunks; and attend_row's AVX2 loops give its portable bits.
#include "kernels/attention_row.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "kernels/cpu_isa.h"

namespace flamingo::kernels {
namespace {

template <typename T>
void check_heads_match_rows(int64_t nh, int64_t d, int64_t ctx, bool avx2, at::ScalarType dtype) {
  // K/V rows of 2 * nh heads (the group is the second half: a row's other heads lie around it).
  const at::Tensor q = at::randn({nh, d}).to(dtype);
  const at::Tensor k = at::randn({ctx, 2 * nh, d}).to(dtype);
  const at::Tensor v = at::randn({ctx, 2 * nh, d}).to(dtype);
  const T* kp = k.data_ptr<T>() + nh * d;
  const T* vp = v.data_ptr<T>() + nh * d;
  const int64_t stride = 2 * nh * d;
  const float scale = 0.3f;
  at::Tensor heads = at::empty({nh, d}, dtype);
  AttendScratch s;
  attend_heads(
      q.data_ptr<T>(), nh, d, scale, ctx, [&](int64_t j) { return kp + j * stride; },
      [&](int64_t j) { return vp + j * stride; }, heads.data_ptr<T>(), s, avx2);
  for (int64_t h = 0; h < nh; ++h) {
    at::Tensor row = at::empty({d}, dtype);
    AttendScratch r;
    attend_row(
        q.data_ptr<T>() + h * d, d, scale, ctx, [&](int64_t j) { return kp + j * stride + h * d; },
        [&](int64_t j) { return vp + j * stride + h * d; }, row.data_ptr<T>(), r, avx2);
    EXPECT_EQ(std::memcmp(row.data_ptr(), heads[h].data_ptr(), d * sizeof(T)), 0)
        << "dtype " << dtype << " nh " << nh << " d " << d << " ctx " << ctx << " avx2 " << avx2
        << " head " << h;
  }
}

TEST(AttendHeads, EachHeadGetsTheBitsOfAttendRowAlone) {
  at::manual_seed(21);
  for (bool avx2 : {false, true}) {
    if (avx2 && cpu_isa() < Isa::kAvx2) continue;
    for (int64_t nh : {1, 3, 4, 7, 16}) {
      for (int64_t d : {1, 7, 8, 12, 64, 100}) {
        for (int64_t ctx : {1, 5, 8, 9, 40}) {
          check_heads_match_rows<float>(nh, d, ctx, avx2, at::kFloat);
          check_heads_match_rows<at::BFloat16>(nh, d, ctx, avx2, at::kBFloat16);
        }
      }
    }
  }
}

TEST(AttendHeads, Avx2LoopsGiveThePortableBits) {
  if (cpu_isa() < Isa::kAvx2) GTEST_SKIP() << "no AVX2 here";
  at::manual_seed(22);
  for (int64_t nh : {3, 8}) {
    for (int64_t d : {12, 64}) {
      const int64_t ctx = 19;
      const at::Tensor q = at::randn({nh, d}), k = at::randn({ctx, nh, d}),
                       v = at::randn({ctx, nh, d});
      const float* kp = k.data_ptr<float>();
      const float* vp = v.data_ptr<float>();
      auto key = [&](int64_t j) { return kp + j * nh * d; };
      auto value = [&](int64_t j) { return vp + j * nh * d; };
      at::Tensor vec = at::empty({nh, d}), plain = at::empty({nh, d});
      AttendScratch s;
      attend_heads(q.data_ptr<float>(), nh, d, 0.5f, ctx, key, value, vec.data_ptr<float>(), s,
                   true);
      attend_heads(q.data_ptr<float>(), nh, d, 0.5f, ctx, key, value, plain.data_ptr<float>(), s,
                   false);
      EXPECT_TRUE(at::equal(vec, plain)) << "nh " << nh << " d " << d;
    }
  }
}

}  // namespace
}  // namespace flamingo::kernels
