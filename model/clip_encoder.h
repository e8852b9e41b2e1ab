// The transformer encoder of CLIP's towers (transformers' CLIPEncoder, also IDEFICS's vision
// encoder): pre-norm layers of self-attention (q/k/v/out with biases, scaled by 1/sqrt(head
// dim)) and an MLP with the config's activation. The vision tower attends to every token; the
// text tower causally. Immutable after construction; forward is thread-safe.
#pragma once

#include <ATen/ATen.h>

#include <string>
#include <vector>

#include "model/layers.h"

namespace flamingo {

struct ClipEncoderShape {
  int64_t embed_dim = 0, num_heads = 0, intermediate_size = 0, num_layers = 0;
  double layer_norm_eps = 1e-5;
  std::string hidden_act;
};

class ClipEncoder {
 public:
  ClipEncoder() = default;
  // Loads "<prefix>.layers.<i>.{layer_norm1,self_attn.{q,k,v,out}_proj,layer_norm2,mlp.fc1,
  // mlp.fc2}" (prefix e.g. "vision_model.encoder").
  ClipEncoder(const ClipEncoderShape& shape, WeightLoader& weights, const std::string& prefix);

  // x [N, L, E] -> [N, L, E]. causal: position i attends to positions <= i only.
  at::Tensor forward(const at::Tensor& x, bool causal) const;

 private:
  struct Layer {
    LayerNorm norm1, norm2;
    Linear q, k, v, out, fc1, fc2;
  };
  ClipEncoderShape shape_;
  std::vector<Layer> layers_;
};

}  // namespace flamingo
