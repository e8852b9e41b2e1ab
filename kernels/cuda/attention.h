// Attention on an NVIDIA GPU (issue 13), bfloat16 in and out, float32 inside: decode and
// prefill tokens against a paged KV cache (kernels/paged_attention.h's layout), and text rows
// against cached image K/V (kernels/row_attention.h's groups, with the heads side by side).
// Torch-free: raw device pointers and a stream.
//
// One block of kAttentionThreads (kAttentionWarps warps) per (query row, head); the order of
// every sum is fixed by the row's number of keys and d alone, never by the other rows or the
// launch, so a row's bits are the same alone or in any batch:
//   qf[i] = bf16 q[i] x scale (float32, rounded);
//   score j: lane l sums fma(qf[i], k_j[i], .) over i = l, l + 32, ... (< d) in increasing i,
//     then the warp's butterfly v = v + v[lane ^ o] (o = 16 .. 1);
//   m = max of the scores; e_j = exp_float(score_j - m) (kernels/exp_float.h);
//   sum: thread t adds e_j for j = t, t + kAttentionThreads, ... in increasing j, then each
//     warp's butterfly, then one butterfly over the warps' sums (zeros past them);
//   values: warp w sums fma(e_j, v_j[i], .) over j = w, w + kAttentionWarps, ... in increasing j
//     (lane l: i = l, l + 32, ...); the warps' sums are added in warp order;
//   out[i] = bf16(sum_i x (1 / sum)); no keys: zeros.
// The CPU references below compute that order (std::fma), so a GPU result must equal them bit
// for bit. Against float64 softmax attention they are within a few float32 roundings
// (tests/kernels/cuda/attention_reference_test.cpp); against the CPU kernels within bfloat16's
// rounding of the output (their sums run in other orders).
#pragma once

#include <cstdint>

namespace flamingo::kernels::cuda {

constexpr int kAttentionWarps = 4;
constexpr int kAttentionThreads = 32 * kAttentionWarps;
constexpr int64_t kMaxAttentionHeadDim = 256;  // 8 elements per lane

struct AttentionPlan {
  int64_t blocks = 0;        // rows x heads
  int threads = 0;           // kAttentionThreads
  int64_t shared_bytes = 0;  // the scores of max_keys keys + the warps' value sums
};

// The launch for rows x heads query rows of d and at most max_keys keys each, on a device that
// allows shared_limit bytes of dynamic shared memory per block (host-side logic, no GPU).
// Throws std::invalid_argument for negative sizes, d outside [1, kMaxAttentionHeadDim], more
// than 2^31 - 1 blocks, or more keys than the shared memory holds (naming the most it holds).
AttentionPlan attention_plan(int64_t rows, int64_t heads, int64_t d, int64_t max_keys,
                             int64_t shared_limit);

// Causal attention of T query tokens over a paged KV cache (device pointers):
//   q, out        [T, H, D]
//   k_cache, v_cache [num_blocks, block_size, H, D]
//   block_tables  [S, max_blocks_per_seq] int32; seq_of_token [T]; context_lens [T] int32
// Token t attends to positions [0, context_lens[t]) of sequence seq_of_token[t]. max_context:
// the largest context_lens entry (the caller has it on the host; it sizes shared memory); a
// token whose context is longer gets NaN outputs rather than a wrong answer. Throws as
// attention_plan, std::invalid_argument for block_size < 1, std::runtime_error naming the CUDA
// error when the launch fails.
void paged_attention(const uint16_t* q, int64_t tokens, int64_t heads, int64_t d,
                     const uint16_t* k_cache, const uint16_t* v_cache, int64_t block_size,
                     const int32_t* block_tables, int64_t max_blocks_per_seq,
                     const int32_t* seq_of_token, const int32_t* context_lens, int64_t max_context,
                     float scale, uint16_t* out, void* stream);

// Rows against groups of dense keys and values (one image's latents a group; device pointers):
//   q, out [R, H, D]; group_of_row [R] int32 (-1: the row sees no group and is not written);
//   k_groups[g], v_groups[g]: [group_len[g], H, D], the heads side by side in each row as a
//   projection of the latents gives them (k_groups, v_groups, group_len are device arrays).
//   max_len: the largest group_len of any row's group (as max_context above).
void cross_attention(const uint16_t* q, int64_t rows, int64_t heads, int64_t d,
                     const int32_t* group_of_row, const uint16_t* const* k_groups,
                     const uint16_t* const* v_groups, const int32_t* group_len, int64_t max_len,
                     float scale, uint16_t* out, void* stream);

// The same orders on the CPU (host pointers; k_groups / v_groups host arrays of host pointers).
void paged_attention_reference(const uint16_t* q, int64_t tokens, int64_t heads, int64_t d,
                               const uint16_t* k_cache, const uint16_t* v_cache, int64_t block_size,
                               const int32_t* block_tables, int64_t max_blocks_per_seq,
                               const int32_t* seq_of_token, const int32_t* context_lens,
                               float scale, uint16_t* out);
void cross_attention_reference(const uint16_t* q, int64_t rows, int64_t heads, int64_t d,
                               const int32_t* group_of_row, const uint16_t* const* k_groups,
                               const uint16_t* const* v_groups, const int32_t* group_len,
                               float scale, uint16_t* out);

}  // namespace flamingo::kernels::cuda
