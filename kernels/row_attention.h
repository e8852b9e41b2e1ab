// Attention of query rows against one dense set of keys and values (cross-attention to an
// image's latents), CPU kernel: every (row, head) on its own through kernels/attention_row.h,
// so a row's result does not depend on how many other rows see the same image in a step
// (at::matmul's blocking did). Parallel over rows x heads on the kernel pool. Thread-safe.
#pragma once

#include <ATen/ATen.h>

namespace flamingo::kernels {

// q [R, H, D]; k, v [H, L, D] (same dtype as q: float32 or bfloat16) -> [R, H, D] in q's dtype:
// out[r][h] = softmax(q[r][h] . k[h]^T * scale) . v[h], accumulated in float32.
at::Tensor row_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                         double scale);

}  // namespace flamingo::kernels
