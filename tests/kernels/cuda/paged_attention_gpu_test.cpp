// The paged attention CUDA kernel (kernels/cuda/paged_attention.cu) on the GPU: equal to its
// CPU reference bit for bit over head sizes, block sizes and contexts (none, one key, a
// block's edge, 2048, and 20000, past the default 48 KB of shared memory); a token's bits the
// same alone as in a batch of mixed contexts; a context longer than the launch's max_context
// gives NaN, not a wrong answer; too many keys for the device is an error before any launch.
// Label gpu: skipped, saying why, where no CUDA device answers.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <stdexcept>
#include <vector>

#include "kernels/cuda/attention.h"
#include "tests/kernels/cuda/cuda_test_util.h"
#include "tests/kernels/cuda/gpu_test.h"

namespace flamingo::kernels::cuda {
namespace {

using testing::from_device;
using testing::random_bf16;
using testing::to_device;
using PagedAttentionGpu = testing::GpuTest;

struct Cache {
  int64_t heads, d, block_size, per_seq;
  std::vector<uint16_t> k, v;
  std::vector<int32_t> table;
};

Cache make_cache(int64_t seqs, int64_t heads, int64_t d, int64_t block_size, int64_t max_ctx,
                 std::mt19937& rng) {
  Cache c{heads, d, block_size, (max_ctx + block_size - 1) / block_size + 1, {}, {}, {}};
  const int64_t blocks = seqs * c.per_seq;
  c.k = random_bf16(blocks * block_size * heads * d, rng);
  c.v = random_bf16(blocks * block_size * heads * d, rng, 2.f);
  c.table.resize(blocks);
  std::iota(c.table.begin(), c.table.end(), 0);
  std::shuffle(c.table.begin(), c.table.end(), rng);
  return c;
}

// Runs tokens (sequence i for token i) on the GPU with max_context = the largest context.
std::vector<uint16_t> run_gpu(const Cache& c, const std::vector<uint16_t>& q,
                              const std::vector<int32_t>& seq, const std::vector<int32_t>& ctx,
                              int64_t max_context, float scale) {
  const int64_t tokens = static_cast<int64_t>(seq.size());
  uint16_t *dq = to_device(q), *dk = to_device(c.k), *dv = to_device(c.v),
           *dout = to_device(std::vector<uint16_t>(q.size()));
  int32_t *dt = to_device(c.table), *ds = to_device(seq), *dc = to_device(ctx);
  paged_attention(dq, tokens, c.heads, c.d, dk, dv, c.block_size, dt, c.per_seq, ds, dc,
                  max_context, scale, dout, nullptr);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  std::vector<uint16_t> out = from_device(dout, q.size());
  for (void* p : {static_cast<void*>(dq), static_cast<void*>(dk), static_cast<void*>(dv),
                  static_cast<void*>(dout), static_cast<void*>(dt), static_cast<void*>(ds),
                  static_cast<void*>(dc)}) {
    cudaFree(p);
  }
  return out;
}

TEST_F(PagedAttentionGpu, EqualsTheCpuReferenceBitForBitAloneAndInABatch) {
  std::mt19937 rng(101);
  struct Shape {
    int64_t heads, d, block_size;
    std::vector<int32_t> ctx;
  };
  const std::vector<Shape> shapes = {{1, 1, 1, {1, 3}},
                                     {3, 33, 16, {0, 1, 16, 17, 129}},
                                     {4, 64, 16, {64, 300, 5, 2048}},
                                     {2, 128, 16, {2048, 1, 20000}},
                                     {1, 256, 32, {77}}};
  for (const Shape& s : shapes) {
    const int64_t tokens = static_cast<int64_t>(s.ctx.size());
    const int64_t max_ctx = *std::max_element(s.ctx.begin(), s.ctx.end());
    const Cache c = make_cache(tokens, s.heads, s.d, s.block_size, max_ctx, rng);
    const int64_t row = s.heads * s.d;
    const std::vector<uint16_t> q = random_bf16(tokens * row, rng, 2.f);
    std::vector<int32_t> seq(tokens);
    std::iota(seq.begin(), seq.end(), 0);
    const float scale = 1.f / std::sqrt(static_cast<float>(s.d));
    std::vector<uint16_t> want(q.size());
    paged_attention_reference(q.data(), tokens, s.heads, s.d, c.k.data(), c.v.data(), s.block_size,
                              c.table.data(), c.per_seq, seq.data(), s.ctx.data(), scale,
                              want.data());
    EXPECT_EQ(run_gpu(c, q, seq, s.ctx, max_ctx, scale), want) << "d=" << s.d;
    for (int64_t t = 0; t < tokens; ++t) {  // alone, with its own max_context
      const std::vector<uint16_t> qt(q.begin() + t * row, q.begin() + (t + 1) * row);
      const std::vector<uint16_t> alone = run_gpu(c, qt, {seq[t]}, {s.ctx[t]}, s.ctx[t], scale);
      EXPECT_TRUE(std::equal(alone.begin(), alone.end(), want.begin() + t * row))
          << "d=" << s.d << " token " << t << " alone";
    }
  }
}

TEST_F(PagedAttentionGpu, AContextPastMaxContextGivesNaN) {
  std::mt19937 rng(102);
  const Cache c = make_cache(1, 2, 64, 16, 100, rng);
  const std::vector<uint16_t> q = random_bf16(2 * 64, rng);
  const std::vector<uint16_t> out = run_gpu(c, q, {0}, {100}, 50, 0.125f);
  EXPECT_TRUE(
      std::all_of(out.begin(), out.end(), [](uint16_t b) { return std::isnan(bf16_value(b)); }));
}

TEST_F(PagedAttentionGpu, TooManyKeysIsAnErrorBeforeAnyLaunch) {
  EXPECT_THROW(paged_attention(nullptr, 1, 1, 128, nullptr, nullptr, 16, nullptr, 1, nullptr,
                               nullptr, int64_t{1} << 30, 1.f, nullptr, nullptr),
               std::invalid_argument);
  EXPECT_THROW(paged_attention(nullptr, 1, 1, 128, nullptr, nullptr, 0, nullptr, 1, nullptr,
                               nullptr, 16, 1.f, nullptr, nullptr),
               std::invalid_argument);
  EXPECT_NO_THROW(paged_attention(nullptr, 0, 32, 128, nullptr, nullptr, 16, nullptr, 1, nullptr,
                                  nullptr, 16, 1.f, nullptr, nullptr));
}

}  // namespace
}  // namespace flamingo::kernels::cuda
