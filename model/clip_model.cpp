#include "model/clip_model.h"

#include <cmath>

#include "model/error.h"
#include "model/safetensors.h"

namespace flamingo {
namespace {

at::Tensor normalized(const at::Tensor& x) {
  const at::Tensor f = x.to(at::kFloat);
  return f / f.norm(2, {-1}, /*keepdim=*/true);
}

}  // namespace

std::unique_ptr<ClipModel> ClipModel::load(const std::string& dir, const ModelOptions& options) {
  std::unique_ptr<ClipModel> m(new ClipModel());
  m->config_ = load_clip_config(dir);
  m->dtype_ = FlamingoModel::parse_dtype(options.dtype);
  const ClipConfig& c = m->config_;
  Checkpoint ckpt = Checkpoint::open(dir);
  const TensorView* probe = ckpt.find("text_model.encoder.layers.0.self_attn.q_proj.weight");
  m->weight_type_ = FlamingoModel::resolve_weights(
      options.weights, m->dtype_, probe != nullptr && probe->dtype == StoredDtype::kBF16);
  WeightLoader w(ckpt, m->dtype_, m->weight_type_, options.progress);
  m->text_ = std::make_unique<ClipText>(c.text, w, "text_model");
  m->vision_ = std::make_unique<ClipVision>(c.vision, w, "vision_model", /*post_layernorm=*/true);
  m->text_projection_ = Linear(w, "text_projection", c.text.hidden_size, c.projection_dim, false);
  m->visual_projection_ =
      Linear(w, "visual_projection", c.vision.embed_dim, c.projection_dim, false);
  // A scalar in CLIPModel (some conversions store it as [1]), read as stored: in the compute
  // dtype a bfloat16 model would round it (exp(3.337) = 28.13 became 28.33).
  at::Tensor scale;
  try {
    scale = w.get_stored("logit_scale", {1});
  } catch (const Error&) {
    scale = w.get_stored("logit_scale", {});
  }
  m->logit_scale_ = std::exp(scale.to(at::kDouble).item<double>());
  return m;
}

at::Tensor ClipModel::image_pooled(const at::Tensor& pixel_values) const {
  return vision_->pooled(pixel_values);
}

at::Tensor ClipModel::image_embeds(const at::Tensor& pixel_values) const {
  return normalized(visual_projection_(image_pooled(pixel_values)));
}

at::Tensor ClipModel::text_pooled(const std::vector<std::vector<int32_t>>& ids) const {
  return text_->pooled(ids);
}

at::Tensor ClipModel::text_embeds(const std::vector<std::vector<int32_t>>& ids) const {
  return normalized(text_projection_(text_pooled(ids)));
}

}  // namespace flamingo
