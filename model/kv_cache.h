// Paged self-attention KV cache: per decoder layer, a K pool and a V pool of
// [num_blocks, block_size, heads, head_dim]. Only tensors live here; which sequence owns
// which block is the caller's bookkeeping (block tables in FlatBatch). Not thread-safe: owned
// by the thread that runs the model.
#pragma once

#include <ATen/ATen.h>

#include <vector>

#include "model/config.h"

namespace flamingo {

class KvCache {
 public:
  KvCache(const ModelConfig& config, int64_t num_blocks, int64_t block_size, at::ScalarType dtype);

  int64_t num_blocks() const { return num_blocks_; }
  int64_t block_size() const { return block_size_; }
  at::Tensor& keys(int64_t layer) { return k_[layer]; }
  at::Tensor& values(int64_t layer) { return v_[layer]; }
  // Bytes one block takes over all layers, K and V.
  static int64_t bytes_per_block(const ModelConfig& config, int64_t block_size,
                                 at::ScalarType dtype);

 private:
  int64_t num_blocks_, block_size_;
  std::vector<at::Tensor> k_, v_;
};

}  // namespace flamingo
