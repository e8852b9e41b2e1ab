// CLIP's text tower (transformers' CLIPTextTransformer): token + learned position embeddings,
// the causal encoder (clip_encoder.h), final_layer_norm, and the pooled output: the hidden
// state at the end-of-text position, chosen as transformers v4.44 does (ClipTextConfig::
// eos_token_id). Texts of one length run as one batch; each text's result is the same alone
// or in any batch. Immutable after construction; thread-safe.
#pragma once

#include <ATen/ATen.h>

#include <string>
#include <vector>

#include "model/clip_config.h"
#include "model/clip_encoder.h"
#include "model/layers.h"

namespace flamingo {

class ClipText {
 public:
  ClipText(const ClipTextConfig& config, WeightLoader& weights, const std::string& prefix);

  // The pooled output [N, hidden] of each text's ids (start and end tokens included, 1 to
  // max_position_embeddings of them, each in [0, vocab_size)). Throws Error otherwise.
  at::Tensor pooled(const std::vector<std::vector<int32_t>>& ids) const;
  // The position a text is pooled at under `config`'s eos rule.
  static int64_t pool_position_for(const ClipTextConfig& config, const std::vector<int32_t>& ids);

 private:
  ClipTextConfig config_;
  at::Tensor token_embedding_;     // [V, D]
  at::Tensor position_embedding_;  // [max_positions, D]
  ClipEncoder encoder_;
  LayerNorm final_norm_;
};

}  // namespace flamingo
