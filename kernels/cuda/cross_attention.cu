// Attention of text rows against cached image K/V on the GPU: kernel and launcher
// (kernels/cuda/attention.h has the contract, kernels/cuda/attend_block.cuh the block's
// arithmetic).
#include "kernels/cuda/attend_block.cuh"

namespace flamingo::kernels::cuda {
namespace {

using attend_detail::attend;

// Key / value j of one head of a group [len, heads, d]: `row` = heads x d apart.
struct DenseKV {
  const uint16_t* k;
  const uint16_t* v;
  long long row;
  __device__ const uint16_t* key(int j) const { return k + j * row; }
  __device__ const uint16_t* value(int j) const { return v + j * row; }
};

__global__ void cross_attention_kernel(const uint16_t* __restrict__ q, int heads, int d,
                                       const int32_t* __restrict__ group_of_row,
                                       const uint16_t* const* __restrict__ k_groups,
                                       const uint16_t* const* __restrict__ v_groups,
                                       const int32_t* __restrict__ group_len, int max_len,
                                       float scale, uint16_t* __restrict__ out) {
  const long long r = blockIdx.x / heads;
  const int h = static_cast<int>(blockIdx.x % heads);
  const int g = group_of_row[r];
  if (g < 0) return;  // the whole block leaves: the row sees no image
  const int len = group_len[g];
  const long long head = static_cast<long long>(h) * d;
  const DenseKV kv{k_groups[g] + head, v_groups[g] + head, static_cast<long long>(heads) * d};
  const long long at = (r * heads + h) * static_cast<long long>(d);
  attend(q + at, d, scale, len, max_len, kv, out + at);
}

}  // namespace

void cross_attention(const uint16_t* q, int64_t rows, int64_t heads, int64_t d,
                     const int32_t* group_of_row, const uint16_t* const* k_groups,
                     const uint16_t* const* v_groups, const int32_t* group_len, int64_t max_len,
                     float scale, uint16_t* out, void* stream) {
  const AttentionPlan p = attend_detail::plan_on_device(cross_attention_kernel, rows, heads, d,
                                                        max_len, "cross_attention");
  if (p.blocks == 0) return;
  cross_attention_kernel<<<static_cast<unsigned>(p.blocks), p.threads,
                           static_cast<size_t>(p.shared_bytes),
                           static_cast<cudaStream_t>(stream)>>>(
      q, static_cast<int>(heads), static_cast<int>(d), group_of_row, k_groups, v_groups, group_len,
      static_cast<int>(max_len), scale, out);
  check_launch("cross_attention");
}

}  // namespace flamingo::kernels::cuda
