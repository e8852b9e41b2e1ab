// One frozen LLaMA decoder layer (Touvron et al. 2023; transformers' IdeficsDecoderLayer):
//   h = h + o(SelfAttn(RoPE(q, k), v over the paged KV cache))(RMSNorm(h))
//   h = h + SwiGLU(RMSNorm(h))
// Every head has its own K/V (no GQA in IDEFICS configs); RoPE uses the rotate-half layout.
// The layer writes this step's K/V into its cache pools, then runs paged attention
// (kernels/paged_attention). Immutable after construction; forward mutates only the cache.
#pragma once

#include <ATen/ATen.h>

#include <string>

#include "model/config.h"
#include "model/layers.h"

namespace flamingo {

// Per-forward tensors shared by all decoder layers (built once per step).
struct AttentionMetadata {
  at::Tensor cos, sin;      // [T, head_dim] in the compute dtype, rows at each token's position
  at::Tensor slots;         // [T] int64
  at::Tensor block_tables;  // [S, max_blocks] int32
  at::Tensor seq_of_token;  // [T] int32
  at::Tensor context_lens;  // [T] int32 (position + 1)
};

// Rotary tables as transformers' IdeficsEmbedding builds them (float32): [max_pos, head_dim].
struct RotaryTables {
  at::Tensor cos, sin;
  RotaryTables() = default;
  RotaryTables(int64_t head_dim, int64_t max_positions, double base);
};

class LlamaDecoderLayer {
 public:
  LlamaDecoderLayer(const ModelConfig& config, WeightLoader& weights, const std::string& prefix);

  // h [T, hidden] -> [T, hidden]; k_pool/v_pool [blocks, block_size, H, hd].
  at::Tensor forward(const at::Tensor& h, const AttentionMetadata& meta, at::Tensor& k_pool,
                     at::Tensor& v_pool) const;

 private:
  int64_t heads_, head_dim_;
  RmsNorm input_norm_, post_norm_;
  Linear q_, k_, v_, o_;
  SwiGluMlp mlp_;
};

}  // namespace flamingo
