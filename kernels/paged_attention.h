// Causal self-attention of a flattened batch over a paged KV cache (vLLM's PagedAttention,
// Kwon et al. 2023), CPU kernel. Each query token t belongs to sequence seq[t] and attends to
// positions [0, context_len[t]) of that sequence, whose K/V live in fixed-size blocks named
// by the sequence's block table. Prefill chunks and decode tokens of many sequences go
// through one call. Three layers, as every kernel here: the CPU kernel (templated on the
// element type), a launcher on raw pointers, and the checked entry point on tensors.
// Every (token, head) is computed on its own arithmetic (kernels/attention_row.h), so a token's
// result is the same however its prompt is chunked and whatever else shares the step; the
// heads of a token are taken in groups (up to 2 KB of each K/V row), each K/V row read once per
// group, in order.
// Thread-safe (no state); parallel over tokens x heads on the kernel pool.
#pragma once

#include <ATen/ATen.h>

namespace flamingo::kernels {

// q             [T, H, D]                  float32 or bfloat16
// k_cache/v_cache [num_blocks, block_size, H, D], same dtype as q
// block_tables  [S, max_blocks_per_seq]    int32 (entries past a sequence's length unused)
// seq_of_token  [T]                        int32, index into block_tables rows
// context_lens  [T]                        int32, keys visible to the token (its position + 1)
// returns       [T, H, D]                  same dtype as q; softmax accumulates in float32
at::Tensor paged_attention(const at::Tensor& q, const at::Tensor& k_cache,
                           const at::Tensor& v_cache, const at::Tensor& block_tables,
                           const at::Tensor& seq_of_token, const at::Tensor& context_lens,
                           double scale);

}  // namespace flamingo::kernels
