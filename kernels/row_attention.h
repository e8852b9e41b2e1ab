// Attention of query rows against dense sets of keys and values (cross-attention to images'
// latents), CPU kernel: every (row, head) on its own through kernels/attention_row.h, so a
// row's result does not depend on how many other rows see the same image in a step, or on
// which other images the step holds (at::matmul's blocking did). All rows of a step in one
// dispatch, parallel over rows x heads on the kernel pool. Thread-safe.
#pragma once

#include <ATen/ATen.h>

#include <vector>

namespace flamingo::kernels {

// q [R, H, D]; k, v [H, L, D] (same dtype as q: float32 or bfloat16) -> [R, H, D] in q's dtype:
// out[r][h] = softmax(q[r][h] . k[h]^T * scale) . v[h], accumulated in float32.
at::Tensor row_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                         double scale);

// Keys and values of one group of rows (one image's latents): k, v [H, L, D].
struct RowAttentionKV {
  const at::Tensor* k = nullptr;
  const at::Tensor* v = nullptr;
};

// Rows in groups: rows [begin[g], begin[g + 1]) of q [R, H, D] (contiguous) attend to kv[g]
// (contiguous; each group may have its own L) into out (like q); begin has kv.size() + 1
// non-decreasing entries in [0, R]. Each row gets the bits row_attention gives it alone. Rows
// outside every group are not written.
void row_attention_groups(const at::Tensor& q, const std::vector<RowAttentionKV>& kv,
                          const std::vector<int64_t>& begin, double scale, at::Tensor& out);

}  // namespace flamingo::kernels
