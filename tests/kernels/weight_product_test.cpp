// weight_product against a float64 product with the weights the kernel sees (dequantized) over
// a grid of shapes, for every weight type and every ISA path this CPU can run (the lower ones
// forced); bit-identical results across paths, row counts 1..70, every other row, and 1, 2
// and 3 threads; int8 quantization error bounds; bfloat16 activations; argument errors.
#include "kernels/weight_product.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/cpu_isa.h"
#include "kernels/int8_product.h"
#include "kernels/thread_pool.h"
#include "tests/kernels/kernel_test_util.h"

namespace flamingo::kernels {
namespace {

using testing::bit_equal;
using testing::PoolGuard;

const WeightType kTypes[] = {WeightType::kFloat32, WeightType::kBFloat16, WeightType::kInt8};

std::vector<Isa> isas() {
  std::vector<Isa> v;
  for (Isa i :
       {Isa::kScalar, Isa::kAvx2, Isa::kAvx512, Isa::kAvx512Vnni, Isa::kAvx512Bf16, Isa::kAmx}) {
    if (i <= cpu_isa()) v.push_back(i);
  }
  return v;
}

// Float32 sums of K products in 16 lanes and a 4-level tree: rounding errors stay near
// sqrt(K / 16) * 2^-24 of sum |x||w| (under 1e-6 at K = 4096), inside 1e-5 * sum |x||w| +
// 1e-6; a dropped or repeated product (about 1/K of the sum) is outside it.
// int8 weights: the reference takes x as the kernel does, quantized per group of 64
// (kernels/int8_product.h).
at::Tensor activations_seen(const at::Tensor& x, const PackedWeight& w) {
  if (w.type() != WeightType::kInt8) return x.to(at::kDouble);
  const int64_t k = x.size(1), groups = (k + 63) / 64;
  const at::Tensor xc = x.to(at::kFloat).contiguous();
  at::Tensor out = at::empty({x.size(0), k}, at::kDouble);
  std::vector<int8_t> q(groups * 64);
  std::vector<float> s(groups);
  for (int64_t r = 0; r < x.size(0); ++r) {
    quantize_activation_row(xc.data_ptr<float>() + r * k, k, q.data(), s.data());
    for (int64_t i = 0; i < k; ++i) {
      out[r][i] = static_cast<double>(q[i]) * static_cast<double>(s[i / 64]);
    }
  }
  return out;
}

void expect_matches_reference(const at::Tensor& y, const at::Tensor& x, const PackedWeight& w,
                              const std::string& what) {
  const at::Tensor xd = activations_seen(x, w), wd = w.dequantize().to(at::kDouble);
  const at::Tensor ref = at::matmul(xd, wd.t());
  ASSERT_EQ(y.sizes(), ref.sizes()) << what;
  const at::Tensor bound = at::matmul(xd.abs(), wd.abs().t()) * 1e-5 + 1e-6;
  const at::Tensor excess = (y.to(at::kDouble) - ref).abs() - bound;
  EXPECT_LE(excess.max().item<double>(), 0.0) << what;
}

std::string label(WeightType t, Isa isa, int64_t m, int64_t n, int64_t k) {
  return std::string(weight_type_name(t)) + "/" + isa_name(isa) + " m=" + std::to_string(m) +
         " n=" + std::to_string(n) + " k=" + std::to_string(k);
}

TEST(WeightProduct, MatchesFloat64ReferenceOverShapeGrid) {
  at::manual_seed(11);
  for (WeightType t : kTypes) {
    for (int64_t k : {1, 15, 16, 17, 64, 100, 513, 1031}) {
      for (int64_t n : {1, 7, 9, 33}) {
        const PackedWeight w = PackedWeight::from_dense(at::randn({n, k}), t);
        for (int64_t m : {1, 2, 3, 4, 5, 7, 49, 70}) {
          const at::Tensor x = at::randn({m, k});
          for (Isa isa : isas()) {
            expect_matches_reference(weight_product(x, w, {}, isa), x, w, label(t, isa, m, n, k));
          }
        }
      }
    }
  }
}

TEST(WeightProduct, EveryIsaPathGivesTheSameBits) {
  at::manual_seed(12);
  for (WeightType t : kTypes) {
    for (int64_t k : {16, 33, 520, 1100}) {
      const PackedWeight w = PackedWeight::from_dense(at::randn({37, k}), t);
      const at::Tensor x = at::randn({11, k});
      const at::Tensor scalar = weight_product(x, w, {}, Isa::kScalar);
      for (Isa isa : isas()) {
        EXPECT_TRUE(bit_equal(weight_product(x, w, {}, isa), scalar)) << label(t, isa, 11, 37, k);
      }
    }
  }
}

TEST(WeightProduct, EnvironmentForcedPathIsClampedToTheCpu) {
  set_forced_isa(Isa::kScalar);
  EXPECT_EQ(active_isa(), Isa::kScalar);
  set_forced_isa(Isa::kAvx512);
  EXPECT_EQ(active_isa(), std::min(Isa::kAvx512, cpu_isa()));
  reset_forced_isa();
  EXPECT_EQ(parse_isa("avx2"), Isa::kAvx2);
  EXPECT_EQ(parse_isa("avx512_vnni"), Isa::kAvx512Vnni);
  EXPECT_EQ(parse_isa("avx512_bf16"), Isa::kAvx512Bf16);
  EXPECT_STREQ(isa_name(Isa::kAvx512Bf16), "avx512_bf16");
  EXPECT_EQ(parse_isa("amx"), Isa::kAmx);
  EXPECT_STREQ(isa_name(Isa::kAmx), "amx");
  EXPECT_THROW(parse_isa("sse9"), std::invalid_argument);
}

// Row r of any batch equals row r alone, bit for bit: batches of 1..70 rows (one pass and
// several kMGroup passes, fused and widened weight routes), under 1, 2 and 3 threads.
TEST(WeightProduct, RowsAreBitIdenticalAloneOrInAnyBatchAndThreadCount) {
  PoolGuard guard;
  at::manual_seed(13);
  const int64_t k = 1000, n = 150;  // K % 16 != 0: the tail takes part
  const at::Tensor x = at::randn({70, k});
  for (WeightType t : kTypes) {
    const PackedWeight w = PackedWeight::from_dense(at::randn({n, k}), t);
    for (Isa isa : isas()) {
      set_kernel_threads(1);
      std::vector<at::Tensor> alone;
      for (int64_t r = 0; r < 70; ++r)
        alone.push_back(weight_product(x.narrow(0, r, 1), w, {}, isa));
      for (int threads : {1, 2, 3}) {
        set_kernel_threads(threads);
        for (int64_t m = 1; m <= 70; ++m) {
          const at::Tensor y = weight_product(x.narrow(0, 0, m), w, {}, isa);
          for (int64_t r = 0; r < m; ++r) {
            ASSERT_TRUE(bit_equal(y.narrow(0, r, 1), alone[r]))
                << label(t, isa, m, n, k) << " row " << r << " threads " << threads;
          }
        }
      }
    }
  }
}

TEST(WeightProduct, RowDoesNotDependOnTheOtherRows) {
  at::manual_seed(14);
  const int64_t k = 256, n = 40;
  for (WeightType t : kTypes) {
    const PackedWeight w = PackedWeight::from_dense(at::randn({n, k}), t);
    at::Tensor x = at::randn({9, k});
    const at::Tensor before = weight_product(x, w);
    x.narrow(0, 0, 4).mul_(1000.f);
    x.narrow(0, 5, 4).zero_();
    const at::Tensor after = weight_product(x, w);
    EXPECT_TRUE(bit_equal(before[4], after[4])) << weight_type_name(t);
  }
}

TEST(WeightProduct, Int8QuantizationErrorIsHalfAStepPerGroup) {
  at::manual_seed(15);
  const int64_t k = 200;  // 3 full groups and a partial one
  at::Tensor w = at::randn({5, k});
  w[2].zero_();                        // an all-zero row: scale 0, q 0
  w[3].narrow(0, 64, 64).mul_(100.f);  // an outlier group spoils only its own group
  const PackedWeight p = PackedWeight::from_dense(w, WeightType::kInt8);
  const auto [q, scales] = p.int8_rows();
  ASSERT_EQ(scales.sizes(), (at::IntArrayRef{5, 4}));
  const at::Tensor s = scales.repeat_interleave(kInt8Group, 1).narrow(1, 0, k);
  const at::Tensor err = (p.dequantize() - w).abs();
  EXPECT_TRUE((err <= s * 0.5f * (1 + 1e-6f) + 1e-30f).all().item<bool>());
  EXPECT_EQ(scales[2].abs().sum().item<float>(), 0.f);
  EXPECT_EQ(q.abs().max().item<int8_t>(), 127);
  EXPECT_LT(scales[3][0].item<float>() * 10, scales[3][1].item<float>());
  // Packed: one block of 16 rows (11 of them padding) x 4 groups of 64 bytes and 64 scales.
  EXPECT_EQ(p.bytes(), 4 * (16 * 64 + 16 * 4));
  EXPECT_EQ(p.bytes(), packed_bytes(5, k, WeightType::kInt8));
}

TEST(WeightProduct, FromInt8EqualsQuantizedFromDense) {
  at::manual_seed(16);
  const at::Tensor w = at::randn({6, 130});
  const PackedWeight a = PackedWeight::from_dense(w, WeightType::kInt8);
  const auto [q, scales] = a.int8_rows();
  const PackedWeight b = PackedWeight::from_int8(q.clone(), scales.clone(), kInt8Group);
  const at::Tensor x = at::randn({3, 130});
  EXPECT_TRUE(bit_equal(weight_product(x, a), weight_product(x, b)));
  EXPECT_TRUE(bit_equal(a.data(), b.data()));
  EXPECT_TRUE(bit_equal(a.scales(), b.scales()));
  EXPECT_THROW(PackedWeight::from_int8(q, scales.narrow(1, 0, 2), kInt8Group), c10::Error);
  EXPECT_THROW(PackedWeight::from_int8(q.to(at::kFloat), scales, kInt8Group), c10::Error);
  EXPECT_THROW(PackedWeight::from_int8(q, scales, 48), c10::Error);
}

// The packed layout (kernels/packed_weight.h) round-trips, and joining rows equals quantizing
// the joined weight, for row counts that do and do not fill whole blocks of 16.
TEST(WeightProduct, Int8PackedLayoutRoundTripsAndJoins) {
  at::manual_seed(17);
  // k = 200: whole groups are packed by 16 x 16 word transposes on AVX-512; k = 150 (not a
  // multiple of 4) and partial blocks 4 bytes at a time.
  for (int64_t k : {150, 200}) {
    const int64_t groups = (k + 63) / 64;
    for (int64_t n : {1, 16, 21, 40}) {
      const at::Tensor w = at::randn({n, k});
      const PackedWeight p = PackedWeight::from_dense(w, WeightType::kInt8);
      const auto [q, scales] = p.int8_rows();
      const auto* packed = static_cast<const int8_t*>(p.view().data);
      const auto* qd = q.data_ptr<int8_t>();
      for (int64_t r = 0; r < n; ++r) {
        for (int64_t c = 0; c < k; ++c) {
          ASSERT_EQ(packed[int8_packed_offset(r, c, groups)], qd[r * k + c]) << r << " " << c;
        }
      }
      EXPECT_TRUE(bit_equal(q.to(at::kFloat) * scales.repeat_interleave(64, 1).narrow(1, 0, k),
                            p.dequantize()));
      const at::Tensor tail = at::randn({7, k});
      const PackedWeight joined =
          PackedWeight::join_rows(p, PackedWeight::from_dense(tail, WeightType::kInt8));
      const PackedWeight whole = PackedWeight::from_dense(at::cat({w, tail}, 0), WeightType::kInt8);
      EXPECT_EQ(joined.rows(), n + 7);
      EXPECT_TRUE(bit_equal(joined.data(), whole.data())) << n;
      EXPECT_TRUE(bit_equal(joined.scales(), whole.scales())) << n;
    }
  }
}

// Quantizing at load runs vectorized (AVX-512 / AVX2) where the CPU allows: the bits of the
// scalar quantize_int8_row on every path, for float32 and bfloat16 weights, halfway values,
// all-zero groups and a short last group.
TEST(WeightProduct, Int8QuantizationAtLoadGivesTheScalarBitsOnEveryPath) {
  at::manual_seed(18);
  const int64_t n = 19, k = 200;
  at::Tensor w = at::randn({n, k});
  for (int64_t i = 0; i < k; ++i) w[3][i] = i % 64 == 0 ? 127.f : ((i * 5) % 254 - 127) / 2.f;
  w[4].narrow(0, 64, 64).zero_();
  for (const at::Tensor& dense : {w, w.to(at::kBFloat16)}) {
    const at::Tensor wf = dense.to(at::kFloat).contiguous();
    at::Tensor q = at::empty({n, k}, at::kChar), s = at::empty({n, 4});
    for (int64_t r = 0; r < n; ++r) {
      quantize_int8_row(wf.data_ptr<float>() + r * k, k, kInt8Group, q.data_ptr<int8_t>() + r * k,
                        s.data_ptr<float>() + r * 4);
    }
    for (Isa isa : isas()) {
      set_forced_isa(isa);
      const auto [pq, ps] = PackedWeight::from_dense(dense, WeightType::kInt8).int8_rows();
      EXPECT_TRUE(bit_equal(pq, q)) << isa_name(isa) << " " << dense.scalar_type();
      EXPECT_TRUE(bit_equal(ps, s)) << isa_name(isa) << " " << dense.scalar_type();
    }
    reset_forced_isa();
  }
}

TEST(WeightProduct, BFloat16WeightsAreUsedAsStored) {
  const at::Tensor w = at::randn({8, 32}).to(at::kBFloat16);
  const PackedWeight p = PackedWeight::from_dense(w, WeightType::kBFloat16);
  EXPECT_EQ(p.data().data_ptr(), w.data_ptr());  // no copy
  EXPECT_EQ(p.bytes(), 8 * 32 * 2);
}

// Below Isa::kAvx512Bf16 (where bfloat16 x with bfloat16 weights runs vdpbf16ps or AMX tiles:
// bf16_dot_product_test, amx_product_test).
TEST(WeightProduct, BFloat16ActivationsGiveTheRoundedFloat32Result) {
  at::manual_seed(17);
  const PackedWeight w = PackedWeight::from_dense(at::randn({20, 48}), WeightType::kBFloat16);
  const at::Tensor x = at::randn({3, 48}).to(at::kBFloat16);
  for (Isa isa : isas()) {
    if (isa >= Isa::kAvx512Bf16) continue;
    const at::Tensor y = weight_product(x, w, {}, isa);
    EXPECT_EQ(y.scalar_type(), at::kBFloat16);
    EXPECT_TRUE(bit_equal(y, weight_product(x.to(at::kFloat), w, {}, isa).to(at::kBFloat16)))
        << isa_name(isa);
  }
}

TEST(WeightProduct, BiasIsAddedInFloat32BeforeRounding) {
  at::manual_seed(18);
  const PackedWeight w = PackedWeight::from_dense(at::randn({12, 40}), WeightType::kFloat32);
  const at::Tensor x = at::randn({2, 40}), b = at::randn({12});
  EXPECT_TRUE(bit_equal(weight_product(x, w, b), weight_product(x, w).add(b)));
  const at::Tensor xb = x.to(at::kBFloat16);
  EXPECT_TRUE(bit_equal(weight_product(xb, w, b.to(at::kBFloat16)),
                        weight_product(xb.to(at::kFloat), w)
                            .add(b.to(at::kBFloat16).to(at::kFloat))
                            .to(at::kBFloat16)));
  EXPECT_THROW(weight_product(x, w, at::randn({11})), c10::Error);
}

TEST(WeightProduct, EmptyShapesAndNonContiguousInputs) {
  const PackedWeight w = PackedWeight::from_dense(at::randn({4, 16}), WeightType::kFloat32);
  EXPECT_EQ(weight_product(at::randn({0, 16}), w).sizes(), (at::IntArrayRef{0, 4}));
  const PackedWeight k0 = PackedWeight::from_dense(at::randn({4, 0}), WeightType::kInt8);
  EXPECT_EQ(weight_product(at::randn({2, 0}), k0).abs().sum().item<float>(), 0.f);
  const at::Tensor xt = at::randn({16, 3}).t();
  EXPECT_TRUE(bit_equal(weight_product(xt, w), weight_product(xt.contiguous(), w)));
}

TEST(WeightProduct, ArgumentErrors) {
  const PackedWeight w = PackedWeight::from_dense(at::randn({4, 16}), WeightType::kFloat32);
  EXPECT_THROW(weight_product(at::randn({2, 15}), w), c10::Error);
  EXPECT_THROW(weight_product(at::randn({2, 2, 16}), w), c10::Error);
  EXPECT_THROW(weight_product(at::ones({2, 16}, at::kInt), w), c10::Error);
  EXPECT_THROW(weight_product(at::randn({2, 16}), PackedWeight()), c10::Error);
  EXPECT_THROW(PackedWeight::from_dense(at::randn({16}), WeightType::kFloat32), c10::Error);
  EXPECT_EQ(parse_weight_type("bf16"), WeightType::kBFloat16);
  EXPECT_THROW(parse_weight_type("int4"), std::invalid_argument);
}

}  // namespace
}  // namespace flamingo::kernels
