#include "kernels/paged_attention.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/attention_row.h"
#include "kernels/cpu_isa.h"
#include "kernels/thread_pool.h"

namespace flamingo::kernels {
namespace {

struct PagedAttentionArgs {
  int64_t num_tokens, num_heads, head_dim, block_size, max_blocks;
  const int32_t* block_tables;
  const int32_t* seq_of_token;
  const int32_t* context_lens;
  float scale;
  bool avx2;  // attend_heads' AVX2 loops (same bits)
};

// A task's scratch: attend_heads', and the element offset of each context position's K/V row
// for the token last seen (shared by its head groups; no division per key).
struct PagedScratch {
  AttendScratch attend;
  std::vector<int64_t> offsets;
  int64_t token = -1;
};

// Heads [h0, h0 + nh) of token t through attend_heads, its K/V rows found through the
// sequence's block table.
template <typename T>
void attend_group(const PagedAttentionArgs& a, const T* q, const T* k_cache, const T* v_cache,
                  T* out, int64_t t, int64_t h0, int64_t nh, PagedScratch& scratch) {
  const int64_t d = a.head_dim, ctx = a.context_lens[t];
  const int64_t row_stride = a.num_heads * d;
  if (scratch.token != t) {
    const int32_t* table = a.block_tables + static_cast<int64_t>(a.seq_of_token[t]) * a.max_blocks;
    scratch.offsets.resize(ctx);
    for (int64_t j = 0, b = 0; j < ctx; ++b) {
      const int64_t first = static_cast<int64_t>(table[b]) * a.block_size;
      for (int64_t o = 0; o < a.block_size && j < ctx; ++o, ++j) {
        scratch.offsets[j] = (first + o) * row_stride;
      }
    }
    scratch.token = t;
  }
  const int64_t* offsets = scratch.offsets.data();
  const T* kh = k_cache + h0 * d;
  const T* vh = v_cache + h0 * d;
  const int64_t first = (t * a.num_heads + h0) * d;
  attend_heads(
      q + first, nh, d, a.scale, ctx, [=](int64_t j) { return kh + offsets[j]; },
      [=](int64_t j) { return vh + offsets[j]; }, out + first, scratch.attend, a.avx2);
}

template <typename T>
void paged_attention_cpu(const PagedAttentionArgs& a, const std::vector<int64_t>& tokens,
                         const T* q, const T* k_cache, const T* v_cache, T* out) {
  const int64_t n = static_cast<int64_t>(tokens.size());
  // Heads per item: up to 2 KB of each K/V row, read in order (a whole row of the `small`
  // preset's bfloat16 cache, half of the 9b's); with few tokens, down to 512 bytes so that
  // every thread gets items.
  const int64_t head_bytes = a.head_dim * static_cast<int64_t>(sizeof(T));
  int64_t group = std::clamp<int64_t>(2048 / head_bytes, 1, a.num_heads);
  while (group * head_bytes > 512 &&
         n * ((a.num_heads + group - 1) / group) < 2 * kernel_threads()) {
    group = (group + 1) / 2;
  }
  const int64_t groups = (a.num_heads + group - 1) / group;
  // Grain: keep each task at ~64K multiply-adds or more, so that a decode step with short
  // contexts stays on the calling thread (a thread team per layer costs more than it saves).
  int64_t work = 0;
  for (int64_t t : tokens) work += a.context_lens[t];
  work = std::max<int64_t>(1, 2 * work * a.head_dim * a.num_heads);  // scores + weighted sums
  const int64_t items = n * groups;
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 16) * items / work);
  const int64_t tasks = std::min<int64_t>((items + grain - 1) / grain, 8 * kernel_threads());
  kernel_pool().run(tasks, [&](int64_t task) {
    PagedScratch scratch;
    for (int64_t i = items * task / tasks; i < items * (task + 1) / tasks; ++i) {
      const int64_t h0 = i % groups * group;
      attend_group(a, q, k_cache, v_cache, out, tokens[i / groups], h0,
                   std::min(group, a.num_heads - h0), scratch);
    }
  });
}

}  // namespace

at::Tensor paged_attention(const at::Tensor& q, const at::Tensor& k_cache,
                           const at::Tensor& v_cache, const at::Tensor& block_tables,
                           const at::Tensor& seq_of_token, const at::Tensor& context_lens,
                           double scale) {
  TORCH_CHECK(q.dim() == 3, "paged_attention: q must be [T, H, D], got ", q.sizes());
  TORCH_CHECK(k_cache.dim() == 4 && k_cache.sizes() == v_cache.sizes(),
              "paged_attention: k/v cache must be [blocks, block_size, H, D] and equal, got ",
              k_cache.sizes(), " and ", v_cache.sizes());
  TORCH_CHECK(k_cache.size(2) == q.size(1) && k_cache.size(3) == q.size(2),
              "paged_attention: cache heads/dim ", k_cache.sizes(), " do not match q ", q.sizes());
  TORCH_CHECK(q.scalar_type() == k_cache.scalar_type() && q.scalar_type() == v_cache.scalar_type(),
              "paged_attention: q and caches must share a dtype");
  TORCH_CHECK(block_tables.dim() == 2 && block_tables.scalar_type() == at::kInt,
              "paged_attention: block_tables must be int32 [S, max_blocks]");
  TORCH_CHECK(seq_of_token.scalar_type() == at::kInt && context_lens.scalar_type() == at::kInt &&
                  seq_of_token.numel() == q.size(0) && context_lens.numel() == q.size(0),
              "paged_attention: seq_of_token/context_lens must be int32 [T]");
  TORCH_CHECK(q.device().is_cpu(), "paged_attention: CPU kernel got a ", q.device(), " tensor");
  at::Tensor qc = q.contiguous(), kc = k_cache.contiguous(), vc = v_cache.contiguous();
  at::Tensor bt = block_tables.contiguous(), st = seq_of_token.contiguous(),
             cl = context_lens.contiguous();
  const int64_t block_size = kc.size(1);
  {  // bounds: a bad table must be an error, never an out-of-bounds read
    const int32_t* s = st.data_ptr<int32_t>();
    const int32_t* c = cl.data_ptr<int32_t>();
    for (int64_t t = 0; t < qc.size(0); ++t) {
      TORCH_CHECK(s[t] >= 0 && s[t] < bt.size(0), "paged_attention: token ", t, " names sequence ",
                  s[t], " of ", bt.size(0));
      TORCH_CHECK(c[t] >= 1 && c[t] <= bt.size(1) * block_size, "paged_attention: token ", t,
                  " context ", c[t], " exceeds its block table (", bt.size(1) * block_size, ")");
      const int32_t* row = bt.data_ptr<int32_t>() + s[t] * bt.size(1);
      for (int64_t b = 0; b < (c[t] + block_size - 1) / block_size; ++b) {
        TORCH_CHECK(row[b] >= 0 && row[b] < kc.size(0), "paged_attention: block id ", row[b],
                    " out of range [0, ", kc.size(0), ")");
      }
    }
  }
  at::Tensor out = at::empty_like(qc);
  // Every token through the per-token kernel: a token's result must not depend on how a
  // prompt is chunked or which tokens share the step (a matrix-product path for prefill runs
  // gave other bits than the per-token kernel).
  std::vector<int64_t> tokens(qc.size(0));
  for (int64_t t = 0; t < qc.size(0); ++t) tokens[t] = t;
  PagedAttentionArgs a{qc.size(0),
                       qc.size(1),
                       qc.size(2),
                       block_size,
                       bt.size(1),
                       bt.data_ptr<int32_t>(),
                       st.data_ptr<int32_t>(),
                       cl.data_ptr<int32_t>(),
                       static_cast<float>(scale),
                       active_isa() >= Isa::kAvx2};
  if (qc.scalar_type() == at::kFloat) {
    paged_attention_cpu<float>(a, tokens, qc.data_ptr<float>(), kc.data_ptr<float>(),
                               vc.data_ptr<float>(), out.data_ptr<float>());
  } else if (qc.scalar_type() == at::kBFloat16) {
    paged_attention_cpu<at::BFloat16>(a, tokens, qc.data_ptr<at::BFloat16>(),
                                      kc.data_ptr<at::BFloat16>(), vc.data_ptr<at::BFloat16>(),
                                      out.data_ptr<at::BFloat16>());
  } else {
    TORCH_CHECK(false, "paged_attention: unsupported dtype ", qc.scalar_type());
  }
  return out;
}

}  // namespace flamingo::kernels
