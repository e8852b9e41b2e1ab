// paged_attention against the plain LibTorch composition (gather the sequence's K/V from its
// blocks, causal softmax attention) over a grid of shapes, block sizes and dtypes, with
// shuffled block tables and several sequences mixing prefill chunks and decode tokens; the same
// bits from the AVX2 and portable loops.
#include "kernels/paged_attention.h"

#include <gtest/gtest.h>

#include <random>
#include <tuple>
#include <utility>

#include "kernels/cpu_isa.h"

namespace flamingo::kernels {
namespace {

struct Case {
  int64_t heads, head_dim, block_size;
  std::vector<int64_t> seq_lens;    // total context of each sequence
  std::vector<int64_t> new_tokens;  // how many trailing tokens of each are queries this step
};

// Reference: for each token, gather keys 0..pos of its sequence and run softmax attention.
at::Tensor reference(const at::Tensor& q, const at::Tensor& kc, const at::Tensor& vc,
                     const std::vector<std::vector<int32_t>>& tables,
                     const std::vector<int32_t>& seq, const std::vector<int32_t>& ctx,
                     double scale) {
  const int64_t bs = kc.size(1);
  std::vector<at::Tensor> outs;
  for (int64_t t = 0; t < q.size(0); ++t) {
    std::vector<int64_t> slots;
    for (int64_t j = 0; j < ctx[t]; ++j) slots.push_back(tables[seq[t]][j / bs] * bs + j % bs);
    at::Tensor idx = at::tensor(slots, at::kLong);
    at::Tensor k = kc.reshape({-1, kc.size(2), kc.size(3)}).index_select(0, idx).to(at::kDouble);
    at::Tensor v = vc.reshape({-1, vc.size(2), vc.size(3)}).index_select(0, idx).to(at::kDouble);
    at::Tensor qt = q[t].to(at::kDouble);                      // [H, D]
    at::Tensor s = at::einsum("hd,jhd->hj", {qt, k}) * scale;  // [H, ctx]
    at::Tensor p = at::softmax(s, -1);
    outs.push_back(at::einsum("hj,jhd->hd", {p, v}));
  }
  return at::stack(outs).to(q.scalar_type());
}

class PagedAttentionGrid : public ::testing::TestWithParam<std::tuple<Case, at::ScalarType>> {};

TEST_P(PagedAttentionGrid, MatchesGatherReference) {
  const auto& [c, dtype] = GetParam();
  at::manual_seed(1234);
  std::mt19937 rng(42);
  int64_t total_blocks = 0;
  for (int64_t len : c.seq_lens) total_blocks += (len + c.block_size - 1) / c.block_size;
  total_blocks += 3;  // spare blocks that nobody uses
  std::vector<int32_t> pool(total_blocks);
  std::iota(pool.begin(), pool.end(), 0);
  std::shuffle(pool.begin(), pool.end(), rng);  // non-contiguous, out-of-order tables
  std::vector<std::vector<int32_t>> tables;
  size_t next = 0;
  std::vector<int32_t> seq, ctx;
  for (size_t s = 0; s < c.seq_lens.size(); ++s) {
    std::vector<int32_t> table;
    for (int64_t b = 0; b < (c.seq_lens[s] + c.block_size - 1) / c.block_size; ++b) {
      table.push_back(pool[next++]);
    }
    tables.push_back(table);
    for (int64_t j = c.seq_lens[s] - c.new_tokens[s]; j < c.seq_lens[s]; ++j) {
      seq.push_back(static_cast<int32_t>(s));
      ctx.push_back(static_cast<int32_t>(j + 1));
    }
  }
  const int64_t t = static_cast<int64_t>(seq.size());
  at::Tensor kc = at::randn({total_blocks, c.block_size, c.heads, c.head_dim}).to(dtype);
  at::Tensor vc = at::randn({total_blocks, c.block_size, c.heads, c.head_dim}).to(dtype);
  at::Tensor q = at::randn({t, c.heads, c.head_dim}).to(dtype);
  int64_t max_blocks = 0;
  for (auto& tb : tables) max_blocks = std::max<int64_t>(max_blocks, tb.size());
  at::Tensor bt = at::full({static_cast<int64_t>(tables.size()), max_blocks}, -1, at::kInt);
  for (size_t s = 0; s < tables.size(); ++s) {
    for (size_t b = 0; b < tables[s].size(); ++b) bt[s][b] = tables[s][b];
  }
  const double scale = 1.0 / std::sqrt(static_cast<double>(c.head_dim));
  at::Tensor out =
      paged_attention(q, kc, vc, bt, at::tensor(seq, at::kInt), at::tensor(ctx, at::kInt), scale);
  at::Tensor ref = reference(q, kc, vc, tables, seq, ctx, scale);
  // fp32: accumulation-order noise only; bf16: one output rounding (8 mantissa bits).
  const double tol = dtype == at::kFloat ? 1e-5 : 2e-2;
  EXPECT_LE((out.to(at::kDouble) - ref.to(at::kDouble)).abs().max().item<double>(), tol);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, PagedAttentionGrid,
    ::testing::Combine(
        ::testing::Values(Case{1, 8, 4, {1}, {1}},                     // single token
                          Case{4, 12, 16, {33}, {33}},                 // prefill, partial block
                          Case{2, 64, 16, {17, 5, 40}, {1, 5, 1}},     // decode + prefill mix
                          Case{8, 128, 8, {64, 9}, {16, 9}},           // chunked prefill
                          Case{3, 16, 1, {7, 3}, {2, 3}},              // block size 1
                          Case{4, 32, 4, {30, 12, 50}, {12, 1, 20}}),  // runs + decode
        ::testing::Values(at::kFloat, at::kBFloat16)));

// A token's output is the same bits whether its prompt is computed in one call, in chunks of
// any size, or one token at a time, and whatever other sequences share the call.
TEST(PagedAttention, TokenBitsDoNotDependOnChunkingOrNeighbours) {
  at::manual_seed(9);
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    const int64_t heads = 4, dim = 32, bs = 4, len = 40;
    const at::Tensor kc = at::randn({2 * len / bs, bs, heads, dim}).to(dtype);
    const at::Tensor vc = at::randn({2 * len / bs, bs, heads, dim}).to(dtype);
    const at::Tensor q = at::randn({len, heads, dim}).to(dtype);
    at::Tensor bt = at::empty({2, len / bs}, at::kInt);
    for (int64_t b = 0; b < len / bs; ++b) {
      bt[0][b] = static_cast<int32_t>(b);
      bt[1][b] = static_cast<int32_t>(len / bs + b);
    }
    auto run = [&](int64_t first, int64_t count, bool with_other) {
      std::vector<int32_t> seq, ctx;
      std::vector<at::Tensor> qs;
      for (int64_t p = first; p < first + count; ++p) {
        seq.push_back(0);
        ctx.push_back(static_cast<int32_t>(p + 1));
        qs.push_back(q[p]);
      }
      if (with_other) {  // a decode token of another sequence in the same call
        seq.push_back(1);
        ctx.push_back(static_cast<int32_t>(len));
        qs.push_back(q[0]);
      }
      return paged_attention(at::stack(qs), kc, vc, bt, at::tensor(seq, at::kInt),
                             at::tensor(ctx, at::kInt), 0.2)
          .narrow(0, 0, count);
    };
    const at::Tensor whole = run(0, len, false);
    for (int64_t chunk : {1, 3, 8, 16}) {
      for (int64_t first = 0; first < len; first += chunk) {
        const int64_t n = std::min(chunk, len - first);
        const at::Tensor part = run(first, n, chunk % 2 == 1);
        EXPECT_TRUE(at::equal(part, whole.narrow(0, first, n)))
            << dtype << " chunk " << chunk << " first " << first;
      }
    }
  }
}

// The AVX2 loops give the portable loops' bits (shuffled blocks, a head dim with a tail, head
// counts below and off the 4-head dot blocks).
TEST(PagedAttention, Avx2LoopsGiveThePortableBits) {
  if (cpu_isa() < Isa::kAvx2) GTEST_SKIP() << "no AVX2 here";
  at::manual_seed(10);
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    for (auto [heads, dim] : {std::pair<int64_t, int64_t>{2, 12}, {2, 64}, {7, 12}, {7, 64}}) {
      const int64_t bs = 4, blocks = 8;
      const at::Tensor kc = at::randn({blocks, bs, heads, dim}).to(dtype);
      const at::Tensor vc = at::randn({blocks, bs, heads, dim}).to(dtype);
      const at::Tensor q = at::randn({3, heads, dim}).to(dtype);
      const at::Tensor bt =
          at::tensor(std::vector<int32_t>{5, 2, 7, 0, 1, 3, 6, 4}, at::kInt).reshape({2, 4});
      const at::Tensor seq = at::tensor(std::vector<int32_t>{0, 1, 1}, at::kInt);
      const at::Tensor ctx = at::tensor(std::vector<int32_t>{13, 16, 9}, at::kInt);
      const at::Tensor vec = paged_attention(q, kc, vc, bt, seq, ctx, 0.25);
      set_forced_isa(Isa::kScalar);
      const at::Tensor plain = paged_attention(q, kc, vc, bt, seq, ctx, 0.25);
      reset_forced_isa();
      EXPECT_TRUE(at::equal(vec, plain)) << dtype << " heads " << heads << " dim " << dim;
    }
  }
}

TEST(PagedAttention, RejectsOutOfRangeBlock) {
  at::Tensor kc = at::zeros({2, 4, 1, 8});
  at::Tensor q = at::zeros({1, 1, 8});
  at::Tensor bt = at::tensor(std::vector<int32_t>{5}, at::kInt).view({1, 1});
  EXPECT_THROW(paged_attention(q, kc, kc, bt, at::tensor(std::vector<int32_t>{0}, at::kInt),
                               at::tensor(std::vector<int32_t>{1}, at::kInt), 1.0),
               c10::Error);
}

TEST(PagedAttention, RejectsContextBeyondTable) {
  at::Tensor kc = at::zeros({2, 4, 1, 8});
  at::Tensor q = at::zeros({1, 1, 8});
  at::Tensor bt = at::tensor(std::vector<int32_t>{0}, at::kInt).view({1, 1});
  EXPECT_THROW(paged_attention(q, kc, kc, bt, at::tensor(std::vector<int32_t>{0}, at::kInt),
                               at::tensor(std::vector<int32_t>{5}, at::kInt), 1.0),
               c10::Error);
}

}  // namespace
}  // namespace flamingo::kernels
