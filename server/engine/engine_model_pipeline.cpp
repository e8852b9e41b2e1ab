// The engine's real model (engine_model.h): a Pipeline, the paged KV pool and the encoded
// images by media cache slot. The only engine file that includes ATen; it also holds
// Engine::start(config), which loads this model and hands it to the engine.
#include <ATen/ATen.h>

#include <cstring>
#include <optional>

#include "model/error.h"
#include "model/kv_cache.h"
#include "model/pipeline.h"
#include "server/engine/engine_model.h"
#include "server/engine/engine_model_cuda.h"
#include "server/engine/pipeline_parts.h"

namespace flamingo {
namespace {

class PipelineModel final : public EngineModel {
 public:
  explicit PipelineModel(std::unique_ptr<Pipeline> pipeline)
      : pipeline_(std::move(pipeline)),
        model_(pipeline_->model()),
        defaults_(pipeline_->generation_defaults()) {}

  const Tokenizer& tokenizer() const override { return pipeline_->tokenizer(); }
  const ImagePreprocessConfig& image_config() const override { return pipeline_->image_config(); }
  const FamilyDefaults& defaults() const override { return defaults_; }

  ModelDescription describe() const override { return describe_pipeline(*pipeline_); }
  int64_t context_length() const override { return model_.context_length(); }
  int64_t vocab_size() const override { return model_.config().total_vocab(); }
  int64_t kv_block_bytes(int32_t block_size) const override {
    return model_.kv_block_bytes(block_size);
  }
  int64_t image_kv_bytes() const override { return model_.image_kv_bytes(); }
  TokenizedPrompt tokenize(const std::vector<PromptItem>& items, size_t num_images) const override {
    return pipeline_->tokenize(items, num_images);
  }

  void allocate_kv(int64_t num_blocks, int32_t block_size) override {
    cache_ = std::make_unique<KvCache>(model_.config(), num_blocks, block_size, model_.dtype());
  }

  void encode_images(std::span<const ImageInput* const> images,
                     std::span<const int32_t> slots) override {
    if (images.size() != slots.size()) throw Error("engine model: images and slots differ");
    if (images.empty()) return;
    std::vector<ImageKV> kv =
        model_.encode_images(pixel_batch(images, pipeline_->image_config().image_size));
    for (size_t i = 0; i < slots.size(); ++i) {
      if (store_.size() <= static_cast<size_t>(slots[i])) store_.resize(slots[i] + 1);
      store_[slots[i]] = std::move(kv[i]);
    }
  }
  bool has_image(int32_t slot) const override {
    return slot >= 0 && static_cast<size_t>(slot) < store_.size() && store_[slot].has_value();
  }
  void drop_image(int32_t slot) override {
    if (has_image(slot)) store_[slot].reset();
  }

  std::span<const float> forward(const FlatBatch& batch,
                                 std::span<const int32_t> image_slots) override {
    if (!cache_) throw Error("engine model: forward before allocate_kv");
    std::vector<const ImageKV*> images;
    images.reserve(image_slots.size());
    for (int32_t slot : image_slots) {
      if (!has_image(slot))
        throw Error("engine model: no encoded image in slot " + std::to_string(slot));
      images.push_back(&*store_[slot]);
    }
    logits_ = model_.forward(batch, *cache_, images).contiguous();
    return {logits_.data_ptr<float>(), static_cast<size_t>(logits_.numel())};
  }

 private:
  std::unique_ptr<Pipeline> pipeline_;
  const FlamingoModel& model_;
  FamilyDefaults defaults_;
  std::unique_ptr<KvCache> cache_;
  std::vector<std::optional<ImageKV>> store_;  // by media cache slot
  at::Tensor logits_;                          // the last forward's (forward()'s span)
};

}  // namespace

ModelDescription describe_pipeline(const Pipeline& pipeline) {
  const FlamingoModel& model = pipeline.model();
  const ModelConfig& mc = model.config();
  ModelDescription d;
  d.family = mc.model_type;
  d.hidden_size = mc.hidden_size;
  d.num_layers = mc.num_hidden_layers;
  d.num_cross_layers = mc.num_cross_layers();
  d.vocab_size = mc.total_vocab();
  d.image_size = pipeline.image_config().image_size;
  d.latents_per_image = mc.image_tokens();
  d.context_length = model.context_length();
  d.dtype = model.dtype() == at::kBFloat16 ? "bfloat16" : "float32";
  d.weights = kernels::weight_type_name(model.weight_type());
  d.kernel_isa = kernels::isa_name(kernels::active_isa());
  d.image_bytes = model.image_kv_bytes();
  return d;
}

at::Tensor pixel_batch(std::span<const ImageInput* const> images, int64_t s) {
  at::Tensor pixels = at::empty({static_cast<int64_t>(images.size()), 3, s, s}, at::kFloat);
  for (size_t i = 0; i < images.size(); ++i) {
    const std::vector<float>& p = images[i]->pixels;
    if (static_cast<int64_t>(p.size()) != 3 * s * s) {
      throw Error("engine: image has " + std::to_string(p.size()) + " values, expected 3 x " +
                  std::to_string(s) + " x " + std::to_string(s));
    }
    std::memcpy(pixels[static_cast<int64_t>(i)].data_ptr<float>(), p.data(),
                p.size() * sizeof(float));
  }
  return pixels;
}

std::unique_ptr<EngineModel> load_engine_model(const EngineConfig& config) {
  if (auto gpu = load_device_engine_model(config)) return gpu;
  FlamingoModel::set_threads(config.threads);
  PipelineOptions po;
  po.model.dtype = config.dtype;
  po.model.weights = config.weights;
  po.model.context_length = config.context_length;
  po.model.progress = config.progress;
  return std::make_unique<PipelineModel>(Pipeline::load(config.model_dir, po));
}

std::unique_ptr<Engine> Engine::start(const EngineConfig& config) {
  return start(config, load_engine_model(config));
}

}  // namespace flamingo
