// A CLIP checkpoint (transformers' CLIPModel in hub layout): the text tower (clip_text.h), the
// vision tower pooled as CLIPVisionModel does (clip_vision.h, post_layernorm of the class
// token), text_projection, visual_projection and logit_scale. Embeddings are the projections,
// L2-normalized, in float32. Immutable after load; const methods are thread-safe.
#pragma once

#include <ATen/ATen.h>

#include <memory>
#include <string>
#include <vector>

#include "model/clip_config.h"
#include "model/clip_text.h"
#include "model/clip_vision.h"
#include "model/flamingo.h"

namespace flamingo {

class ClipModel {
 public:
  // options.dtype and options.weights as for FlamingoModel (context_length is ignored).
  // Throws Error for a bad folder, config, missing tensors or wrong shapes.
  static std::unique_ptr<ClipModel> load(const std::string& dir, const ModelOptions& options);

  const ClipConfig& config() const { return config_; }
  at::ScalarType dtype() const { return dtype_; }
  kernels::WeightType weight_type() const { return weight_type_; }

  // pixel_values [N, 3, S, S] -> pooled [N, vision hidden] / embeddings [N, projection_dim].
  at::Tensor image_pooled(const at::Tensor& pixel_values) const;
  at::Tensor image_embeds(const at::Tensor& pixel_values) const;
  // Token ids per text (ClipTokenizer::encode) -> pooled [N, text hidden] / embeddings.
  at::Tensor text_pooled(const std::vector<std::vector<int32_t>>& ids) const;
  at::Tensor text_embeds(const std::vector<std::vector<int32_t>>& ids) const;
  // exp(logit_scale): CLIPModel's logits are this times the cosine similarity.
  double logit_scale() const { return logit_scale_; }

 private:
  ClipModel() = default;

  ClipConfig config_;
  at::ScalarType dtype_ = at::kFloat;
  kernels::WeightType weight_type_ = kernels::WeightType::kFloat32;
  std::unique_ptr<ClipText> text_;
  std::unique_ptr<ClipVision> vision_;
  Linear text_projection_, visual_projection_;
  double logit_scale_ = 1.0;
};

}  // namespace flamingo
