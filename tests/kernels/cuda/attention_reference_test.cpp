// The launch plan of the CUDA attention kernels and the CPU references of their order of sums
// (kernels/cuda/attention_reference.cpp): the plan's sizes and errors; the references within
// bfloat16's rounding of float64 softmax attention, paged and dense; a row's bits the same
// alone or in a batch; rows outside every group untouched. The GPU kernels are compared with
// the references bit for bit in paged_attention_gpu_test and cross_attention_gpu_test (gpu).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cuda/attention.h"
#include "tests/kernels/cuda/cuda_test_util.h"

namespace flamingo::kernels::cuda {
namespace {

using testing::random_bf16;

TEST(AttentionPlan, SizesAndErrors) {
  const AttentionPlan p = attention_plan(3, 4, 128, 1000, 48 * 1024);
  EXPECT_EQ(p.blocks, 12);
  EXPECT_EQ(p.threads, kAttentionThreads);
  EXPECT_EQ(p.shared_bytes, 1000 * 4 + kAttentionWarps * 128 * 4);
  EXPECT_EQ(attention_plan(0, 32, 64, 0, 1024).blocks, 0);
  EXPECT_THROW(attention_plan(-1, 1, 64, 1, 1 << 20), std::invalid_argument);
  EXPECT_THROW(attention_plan(1, 1, 0, 1, 1 << 20), std::invalid_argument);
  EXPECT_THROW(attention_plan(1, 1, kMaxAttentionHeadDim + 1, 1, 1 << 20), std::invalid_argument);
  EXPECT_THROW(attention_plan(int64_t{1} << 28, 32, 64, 1, 1 << 20), std::invalid_argument);
  try {
    attention_plan(1, 1, 128, 100000, 232448);
    FAIL() << "no error";
  } catch (const std::invalid_argument& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("100000 keys"), std::string::npos) << m;
    EXPECT_NE(m.find("232448"), std::string::npos) << m;
    EXPECT_NE(m.find("at most 57600 keys"), std::string::npos) << m;
  }
}

// float64 softmax attention of one row: q [d], keys/values as pointers.
std::vector<double> exact(const uint16_t* q, int64_t d, double scale,
                          const std::vector<const uint16_t*>& k,
                          const std::vector<const uint16_t*>& v) {
  std::vector<double> s(k.size()), out(d, 0.0);
  for (size_t j = 0; j < k.size(); ++j) {
    double dot = 0;
    for (int64_t i = 0; i < d; ++i) dot += double{bf16_value(q[i])} * bf16_value(k[j][i]);
    s[j] = dot * scale;
  }
  if (s.empty()) return out;
  const double m = *std::max_element(s.begin(), s.end());
  double sum = 0;
  for (double& e : s) sum += (e = std::exp(e - m));
  for (size_t j = 0; j < k.size(); ++j) {
    for (int64_t i = 0; i < d; ++i) out[i] += s[j] / sum * bf16_value(v[j][i]);
  }
  return out;
}

// |got - want| <= 2^-8 |want| + 1e-3 max|v|: the output's bfloat16 rounding (2^-9) and float32
// sums, with room.
void expect_close(const uint16_t* got, const std::vector<double>& want, double vmax,
                  const std::string& where) {
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_LE(std::fabs(bf16_value(got[i]) - want[i]), 0x1p-8 * std::fabs(want[i]) + 1e-3 * vmax)
        << where << " i=" << i;
  }
}

struct PagedCase {
  int64_t heads, d, block_size;
  std::vector<int32_t> contexts;  // one sequence per token
};

TEST(PagedAttentionReference, WithinBfloat16OfFloat64AndBatchInvariant) {
  std::mt19937 rng(81);
  const std::vector<PagedCase> cases = {{1, 1, 1, {1, 2}},
                                        {2, 33, 16, {0, 1, 17, 40}},
                                        {4, 64, 16, {64, 300, 5}},
                                        {2, 128, 16, {2048, 129}},
                                        {1, 256, 8, {70}}};
  for (const PagedCase& c : cases) {
    const int64_t tokens = static_cast<int64_t>(c.contexts.size());
    const int64_t max_ctx = *std::max_element(c.contexts.begin(), c.contexts.end());
    const int64_t per_seq = (max_ctx + c.block_size - 1) / c.block_size + 1;
    const int64_t blocks = tokens * per_seq;
    const int64_t row = c.heads * c.d;
    const std::vector<uint16_t> kc = random_bf16(blocks * c.block_size * row, rng),
                                vc = random_bf16(blocks * c.block_size * row, rng, 2.f),
                                q = random_bf16(tokens * row, rng, 2.f);
    std::vector<int32_t> table(blocks);  // shuffled blocks
    std::iota(table.begin(), table.end(), 0);
    std::shuffle(table.begin(), table.end(), rng);
    std::vector<int32_t> seq(tokens);
    std::iota(seq.begin(), seq.end(), 0);
    const float scale = 1.f / std::sqrt(static_cast<float>(c.d));
    std::vector<uint16_t> out(tokens * row, 0x7777);
    paged_attention_reference(q.data(), tokens, c.heads, c.d, kc.data(), vc.data(), c.block_size,
                              table.data(), per_seq, seq.data(), c.contexts.data(), scale,
                              out.data());
    for (int64_t t = 0; t < tokens; ++t) {
      for (int64_t h = 0; h < c.heads; ++h) {
        std::vector<const uint16_t*> k, v;
        for (int64_t j = 0; j < c.contexts[t]; ++j) {
          const int64_t slot =
              table[t * per_seq + j / c.block_size] * c.block_size + j % c.block_size;
          k.push_back(kc.data() + slot * row + h * c.d);
          v.push_back(vc.data() + slot * row + h * c.d);
        }
        const std::string where =
            "d=" + std::to_string(c.d) + " t=" + std::to_string(t) + " h=" + std::to_string(h);
        expect_close(out.data() + t * row + h * c.d,
                     exact(q.data() + t * row + h * c.d, c.d, scale, k, v), 8.0, where);
      }
      // Alone: the same bits as in the batch.
      std::vector<uint16_t> alone(row);
      paged_attention_reference(q.data() + t * row, 1, c.heads, c.d, kc.data(), vc.data(),
                                c.block_size, table.data(), per_seq, seq.data() + t,
                                c.contexts.data() + t, scale, alone.data());
      EXPECT_TRUE(std::equal(alone.begin(), alone.end(), out.begin() + t * row))
          << "d=" << c.d << " t=" << t;
    }
  }
}

TEST(CrossAttentionReference, WithinBfloat16OfFloat64AndRowsWithoutAGroupUntouched) {
  std::mt19937 rng(82);
  const int64_t heads = 4, d = 64;
  const std::vector<int32_t> len = {64, 128, 1};
  std::vector<std::vector<uint16_t>> k, v;
  std::vector<const uint16_t*> kp, vp;
  for (int32_t l : len) {
    k.push_back(random_bf16(heads * l * d, rng));
    v.push_back(random_bf16(heads * l * d, rng));
    kp.push_back(k.back().data());
    vp.push_back(v.back().data());
  }
  const std::vector<int32_t> group = {-1, 0, 1, 0, 2, -1, 1};
  const int64_t rows = static_cast<int64_t>(group.size());
  const std::vector<uint16_t> q = random_bf16(rows * heads * d, rng, 3.f);
  std::vector<uint16_t> out(q.size(), 0x7777);
  cross_attention_reference(q.data(), rows, heads, d, group.data(), kp.data(), vp.data(),
                            len.data(), 0.125f, out.data());
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t h = 0; h < heads; ++h) {
      const uint16_t* o = out.data() + (r * heads + h) * d;
      if (group[r] < 0) {
        EXPECT_TRUE(std::all_of(o, o + d, [](uint16_t b) { return b == 0x7777; })) << "r=" << r;
        continue;
      }
      const int32_t g = group[r];
      std::vector<const uint16_t*> ks, vs;
      for (int32_t j = 0; j < len[g]; ++j) {
        ks.push_back(kp[g] + (j * heads + h) * d);  // [len, H, D]
        vs.push_back(vp[g] + (j * heads + h) * d);
      }
      expect_close(o, exact(q.data() + (r * heads + h) * d, d, 0.125, ks, vs), 4.0,
                   "r=" + std::to_string(r) + " h=" + std::to_string(h));
    }
  }
}

}  // namespace
}  // namespace flamingo::kernels::cuda
