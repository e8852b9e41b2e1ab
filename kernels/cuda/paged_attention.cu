// Attention over a paged KV cache on the GPU: kernel and launcher (kernels/cuda/attention.h has
// the contract, kernels/cuda/attend_block.cuh the block's arithmetic).
#include "kernels/cuda/attend_block.cuh"

namespace flamingo::kernels::cuda {
namespace {

using attend_detail::attend;

// Key / value j of one token's head: block table entry j / block_size, slot j % block_size.
struct PagedKV {
  const uint16_t* k;
  const uint16_t* v;
  const int32_t* table;
  int block_size;
  long long row;   // heads x d: one cache slot
  long long head;  // this head's offset in a slot
  __device__ long long at(int j) const {
    return (static_cast<long long>(table[j / block_size]) * block_size + j % block_size) * row +
           head;
  }
  __device__ const uint16_t* key(int j) const { return k + at(j); }
  __device__ const uint16_t* value(int j) const { return v + at(j); }
};

__global__ void paged_attention_kernel(const uint16_t* __restrict__ q, int heads, int d,
                                       const uint16_t* __restrict__ k_cache,
                                       const uint16_t* __restrict__ v_cache, int block_size,
                                       const int32_t* __restrict__ block_tables,
                                       long long max_blocks_per_seq,
                                       const int32_t* __restrict__ seq_of_token,
                                       const int32_t* __restrict__ context_lens, int max_context,
                                       float scale, uint16_t* __restrict__ out) {
  const long long token = blockIdx.x / heads;
  const int h = static_cast<int>(blockIdx.x % heads);
  const long long row = static_cast<long long>(heads) * d;
  const PagedKV kv{k_cache,    v_cache, block_tables + seq_of_token[token] * max_blocks_per_seq,
                   block_size, row,     static_cast<long long>(h) * d};
  const long long at = token * row + static_cast<long long>(h) * d;
  attend(q + at, d, scale, context_lens[token], max_context, kv, out + at);
}

}  // namespace

void paged_attention(const uint16_t* q, int64_t tokens, int64_t heads, int64_t d,
                     const uint16_t* k_cache, const uint16_t* v_cache, int64_t block_size,
                     const int32_t* block_tables, int64_t max_blocks_per_seq,
                     const int32_t* seq_of_token, const int32_t* context_lens, int64_t max_context,
                     float scale, uint16_t* out, void* stream) {
  if (block_size < 1 || block_size > (int64_t{1} << 30)) {
    throw std::invalid_argument("paged_attention: block_size must be in [1, 2^30], got " +
                                std::to_string(block_size));
  }
  const AttentionPlan p = attend_detail::plan_on_device(paged_attention_kernel, tokens, heads, d,
                                                        max_context, "paged_attention");
  if (p.blocks == 0) return;
  paged_attention_kernel<<<static_cast<unsigned>(p.blocks), p.threads,
                           static_cast<size_t>(p.shared_bytes),
                           static_cast<cudaStream_t>(stream)>>>(
      q, static_cast<int>(heads), static_cast<int>(d), k_cache, v_cache,
      static_cast<int>(block_size), block_tables, max_blocks_per_seq, seq_of_token, context_lens,
      static_cast<int>(max_context), scale, out);
  check_launch("paged_attention");
}

}  // namespace flamingo::kernels::cuda
