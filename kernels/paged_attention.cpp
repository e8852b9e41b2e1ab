#include "kernels/paged_attention.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace flamingo::kernels {
namespace {

struct PagedAttentionArgs {
  int64_t num_tokens, num_heads, head_dim, block_size, max_blocks;
  const int32_t* block_tables;
  const int32_t* seq_of_token;
  const int32_t* context_lens;
  float scale;
};

// One (token, head): two passes over the visible keys (scores, then the weighted sum of
// values) with float accumulation; inner loops run over head_dim contiguously.
template <typename T>
void attend_one(const PagedAttentionArgs& a, const T* q, const T* k_cache, const T* v_cache, T* out,
                int64_t t, int64_t h, std::vector<float>& scores, std::vector<float>& qf,
                std::vector<float>& acc) {
  const int64_t d = a.head_dim;
  const int64_t ctx = a.context_lens[t];
  const int32_t* table = a.block_tables + static_cast<int64_t>(a.seq_of_token[t]) * a.max_blocks;
  const T* qrow = q + (t * a.num_heads + h) * d;
  for (int64_t i = 0; i < d; ++i) qf[i] = static_cast<float>(qrow[i]) * a.scale;
  scores.resize(ctx);
  float max_score = -std::numeric_limits<float>::infinity();
  const int64_t row_stride = a.num_heads * d;
  for (int64_t j = 0; j < ctx; ++j) {
    const int64_t slot =
        static_cast<int64_t>(table[j / a.block_size]) * a.block_size + j % a.block_size;
    const T* krow = k_cache + slot * row_stride + h * d;
    // Eight independent partial sums let the compiler vectorize the reduction.
    float part[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
    int64_t i = 0;
    for (; i + 8 <= d; i += 8) {
      for (int u = 0; u < 8; ++u) part[u] += qf[i + u] * static_cast<float>(krow[i + u]);
    }
    float s =
        ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
    for (; i < d; ++i) s += qf[i] * static_cast<float>(krow[i]);
    scores[j] = s;
    max_score = std::max(max_score, s);
  }
  float sum = 0.f;
  for (int64_t j = 0; j < ctx; ++j) {
    scores[j] = std::exp(scores[j] - max_score);
    sum += scores[j];
  }
  std::fill(acc.begin(), acc.end(), 0.f);
  for (int64_t j = 0; j < ctx; ++j) {
    const int64_t slot =
        static_cast<int64_t>(table[j / a.block_size]) * a.block_size + j % a.block_size;
    const T* vrow = v_cache + slot * row_stride + h * d;
    const float p = scores[j];
    for (int64_t i = 0; i < d; ++i) acc[i] += p * static_cast<float>(vrow[i]);
  }
  T* orow = out + (t * a.num_heads + h) * d;
  const float inv = sum > 0.f ? 1.f / sum : 0.f;
  for (int64_t i = 0; i < d; ++i) orow[i] = static_cast<T>(acc[i] * inv);
}

template <typename T>
void paged_attention_cpu(const PagedAttentionArgs& a, const std::vector<int64_t>& tokens,
                         const T* q, const T* k_cache, const T* v_cache, T* out) {
  const int64_t n = static_cast<int64_t>(tokens.size());
  // Grain: keep each task at ~64K multiply-adds or more, so that a decode step with short
  // contexts stays on the calling thread (a thread team per layer costs more than it saves).
  int64_t work = 0;
  for (int64_t t : tokens) work += a.context_lens[t];
  work = std::max<int64_t>(1, 2 * work * a.head_dim);  // per head: scores + weighted sum
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 16) * n / work);
  at::parallel_for(0, n * a.num_heads, grain, [&](int64_t begin, int64_t end) {
    std::vector<float> scores, qf(a.head_dim), acc(a.head_dim);
    for (int64_t i = begin; i < end; ++i) {
      attend_one(a, q, k_cache, v_cache, out, tokens[i / a.num_heads], i % a.num_heads, scores, qf,
                 acc);
    }
  });
}

// A run of query tokens of one sequence at consecutive positions (a prefill chunk): gather the
// sequence's keys and values once and use matrix products, with the causal mask inside the run.
// Accumulates in float32 like the per-token kernel.
void attend_run(const at::Tensor& q, const at::Tensor& k_cache, const at::Tensor& v_cache,
                const int32_t* table, int64_t first, int64_t count, int64_t first_ctx, double scale,
                at::Tensor& out) {
  const int64_t block_size = k_cache.size(1), heads = k_cache.size(2), dim = k_cache.size(3);
  const int64_t ctx = first_ctx + count - 1;  // keys visible to the run's last token
  std::vector<int64_t> slots(ctx);
  for (int64_t j = 0; j < ctx; ++j) {
    slots[j] = static_cast<int64_t>(table[j / block_size]) * block_size + j % block_size;
  }
  at::Tensor idx = at::tensor(slots, at::kLong);
  at::Tensor k = k_cache.view({-1, heads, dim}).index_select(0, idx).to(at::kFloat).transpose(0, 1);
  at::Tensor v = v_cache.view({-1, heads, dim}).index_select(0, idx).to(at::kFloat).transpose(0, 1);
  at::Tensor qr = q.narrow(0, first, count).to(at::kFloat).transpose(0, 1);  // [H, n, D]
  at::Tensor scores = at::bmm(qr * scale, k.transpose(1, 2));                // [H, n, ctx]
  // Query r sees keys [0, first_ctx + r).
  at::Tensor key_pos = at::arange(ctx, at::kLong).unsqueeze(0);
  at::Tensor limit = at::arange(first_ctx, first_ctx + count, at::kLong).unsqueeze(1);
  scores.masked_fill_((key_pos >= limit).unsqueeze(0), -std::numeric_limits<float>::infinity());
  at::Tensor res = at::bmm(at::softmax(scores, -1), v).transpose(0, 1);  // [n, H, D]
  out.narrow(0, first, count).copy_(res);
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
  // Runs of >= kMinRun tokens of one sequence at consecutive positions go through matrix
  // products; every other token (decode steps, short chunks) through the per-token kernel.
  constexpr int64_t kMinRun = 8;
  std::vector<int64_t> singles;
  {
    const int32_t* s = st.data_ptr<int32_t>();
    const int32_t* c = cl.data_ptr<int32_t>();
    for (int64_t t = 0; t < qc.size(0);) {
      int64_t e = t + 1;
      while (e < qc.size(0) && s[e] == s[t] && c[e] == c[e - 1] + 1) ++e;
      if (e - t >= kMinRun) {
        attend_run(qc, kc, vc, bt.data_ptr<int32_t>() + s[t] * bt.size(1), t, e - t, c[t], scale,
                   out);
      } else {
        for (int64_t i = t; i < e; ++i) singles.push_back(i);
      }
      t = e;
    }
  }
  PagedAttentionArgs a{qc.size(0),
                       qc.size(1),
                       qc.size(2),
                       block_size,
                       bt.size(1),
                       bt.data_ptr<int32_t>(),
                       st.data_ptr<int32_t>(),
                       cl.data_ptr<int32_t>(),
                       static_cast<float>(scale)};
  if (qc.scalar_type() == at::kFloat) {
    paged_attention_cpu<float>(a, singles, qc.data_ptr<float>(), kc.data_ptr<float>(),
                               vc.data_ptr<float>(), out.data_ptr<float>());
  } else if (qc.scalar_type() == at::kBFloat16) {
    paged_attention_cpu<at::BFloat16>(a, singles, qc.data_ptr<at::BFloat16>(),
                                      kc.data_ptr<at::BFloat16>(), vc.data_ptr<at::BFloat16>(),
                                      out.data_ptr<at::BFloat16>());
  } else {
    TORCH_CHECK(false, "paged_attention: unsupported dtype ", qc.scalar_type());
  }
  return out;
}

}  // namespace flamingo::kernels
