#include "model/kv_cache.h"

namespace flamingo {

KvCache::KvCache(const ModelConfig& c, int64_t num_blocks, int64_t block_size, at::ScalarType dtype)
    : num_blocks_(num_blocks), block_size_(block_size) {
  // Not zeroed: a slot is read only after the step that writes it (kernels/paged_attention
  // reads positions below each token's context length, all written), so the pool's pages are
  // first touched when used and the process's RSS counts the blocks in use, not the pool.
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    k_.push_back(at::empty({num_blocks, block_size, c.num_attention_heads, c.head_dim()},
                           at::TensorOptions(dtype)));
    v_.push_back(at::empty_like(k_.back()));
  }
}

int64_t KvCache::bytes_per_block(const ModelConfig& c, int64_t block_size, at::ScalarType dtype) {
  return 2 * c.num_hidden_layers * block_size * c.hidden_size *
         static_cast<int64_t>(at::elementSize(dtype));
}

}  // namespace flamingo
