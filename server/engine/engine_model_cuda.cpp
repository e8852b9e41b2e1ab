// The engine's model with the text decoder on the GPU (engine_model_cuda.h).
#include "server/engine/engine_model_cuda.h"

#include <ATen/ATen.h>

#include <cstring>
#include <optional>
#include <vector>

#include "model/error.h"
#include "model/pipeline.h"
#include "server/engine/pipeline_parts.h"

#if FLAMINGO_HAVE_CUDA_KERNELS
#include "model/cuda_decoder.h"
#include "model/cuda_decoder_checkpoint.h"
#endif

namespace flamingo {

#if FLAMINGO_HAVE_CUDA_KERNELS

bool cuda_decoder_available(std::string* why) { return kernels::cuda::device_available(why); }

namespace {

class CudaModel final : public EngineModel {
 public:
  CudaModel(std::unique_ptr<Pipeline> pipeline, std::unique_ptr<kernels::cuda::DecoderOps> ops,
            const std::string& dir)
      : pipeline_(std::move(pipeline)),
        model_(pipeline_->model()),
        defaults_(pipeline_->generation_defaults()),
        ops_(std::move(ops)),
        checkpoint_(Checkpoint::open(dir)) {}
  ~CudaModel() override {
    if (decoder_) {
      for (auto& image : store_) {
        if (image) decoder_->release_image(*image);
      }
    }
  }

  const Tokenizer& tokenizer() const override { return pipeline_->tokenizer(); }
  const ImagePreprocessConfig& image_config() const override { return pipeline_->image_config(); }
  const FamilyDefaults& defaults() const override { return defaults_; }
  ModelDescription describe() const override {
    ModelDescription d = describe_pipeline(*pipeline_);  // the decoder's fields below
    d.dtype = "bfloat16";
    d.weights = "bfloat16";
    d.device = "cuda";
    d.kernel_isa = std::string("cuda (") + ops_->name() + ")";
    d.image_bytes = image_kv_bytes();
    return d;
  }
  int64_t context_length() const override { return model_.context_length(); }
  int64_t vocab_size() const override { return model_.config().total_vocab(); }
  int64_t kv_block_bytes(int32_t block_size) const override {
    const ModelConfig& c = model_.config();
    return int64_t{2} * 2 * c.num_hidden_layers * block_size * c.hidden_size;
  }
  int64_t image_kv_bytes() const override {
    const ModelConfig& c = model_.config();
    return int64_t{2} * 2 * c.num_cross_layers() * c.image_tokens() * c.hidden_size;
  }
  TokenizedPrompt tokenize(const std::vector<PromptItem>& items, size_t num_images) const override {
    return pipeline_->tokenize(items, num_images);
  }

  void allocate_kv(int64_t num_blocks, int32_t block_size) override {
    if (decoder_) throw Error("engine model: the KV cache is allocated once");
    decoder_ = std::make_unique<CudaDecoder>(
        CudaDecoderConfig::from(model_.config(), model_.context_length(), num_blocks, block_size),
        *ops_, cuda_decoder_weights(checkpoint_, model_.config()));
  }

  void encode_images(std::span<const ImageInput* const> images,
                     std::span<const int32_t> slots) override {
    if (images.size() != slots.size()) throw Error("engine model: images and slots differ");
    if (images.empty()) return;
    if (!decoder_) throw Error("engine model: encode_images before allocate_kv");
    // Vision tower and perceiver on the CPU; the latents' K/V on the device.
    const at::Tensor pixels = pixel_batch(images, pipeline_->image_config().image_size);
    const at::Tensor latents =
        model_.resample(model_.encode_vision(pixels)).to(at::kBFloat16).contiguous();
    std::vector<CudaDecoderImage> encoded;
    try {
      for (int64_t n = 0; n < latents.size(0); ++n) {
        std::vector<uint16_t> host(latents.size(1) * latents.size(2));
        std::memcpy(host.data(), latents[n].data_ptr(), host.size() * 2);
        encoded.push_back(decoder_->image_kv(host, latents.size(1)));
      }
    } catch (...) {
      for (auto& e : encoded) decoder_->release_image(e);  // no slot changed
      throw;
    }
    for (size_t i = 0; i < slots.size(); ++i) {
      if (store_.size() <= static_cast<size_t>(slots[i])) store_.resize(slots[i] + 1);
      if (store_[slots[i]]) decoder_->release_image(*store_[slots[i]]);
      store_[slots[i]] = std::move(encoded[i]);
    }
  }
  bool has_image(int32_t slot) const override {
    return slot >= 0 && static_cast<size_t>(slot) < store_.size() && store_[slot].has_value();
  }
  void drop_image(int32_t slot) override {
    if (has_image(slot)) {
      decoder_->release_image(*store_[slot]);
      store_[slot].reset();
    }
  }

  std::span<const float> forward(const FlatBatch& batch,
                                 std::span<const int32_t> image_slots) override {
    if (!decoder_) throw Error("engine model: forward before allocate_kv");
    std::vector<const CudaDecoderImage*> images;
    for (int32_t slot : image_slots) {
      if (!has_image(slot)) {
        throw Error("engine model: no encoded image in slot " + std::to_string(slot));
      }
      images.push_back(&*store_[slot]);
    }
    logits_ = decoder_->forward(batch, images);
    return {logits_.data(), logits_.size()};
  }

 private:
  std::unique_ptr<Pipeline> pipeline_;
  const FlamingoModel& model_;
  FamilyDefaults defaults_;
  std::unique_ptr<kernels::cuda::DecoderOps> ops_;
  Checkpoint checkpoint_;
  std::unique_ptr<CudaDecoder> decoder_;
  std::vector<std::optional<CudaDecoderImage>> store_;  // by media cache slot
  std::vector<float> logits_;
};

}  // namespace

std::unique_ptr<EngineModel> load_cuda_engine_model(
    const EngineConfig& config, std::unique_ptr<kernels::cuda::DecoderOps> ops) {
  if (config.dtype != "auto" && config.dtype != "bfloat16") {
    throw Error("--device cuda computes in bfloat16: --dtype must be auto or bfloat16, got " +
                config.dtype);
  }
  if (config.weights != "auto" && config.weights != "bfloat16") {
    throw Error("--device cuda holds bfloat16 weights: --weights must be auto or bfloat16, got " +
                config.weights);
  }
  FlamingoModel::set_threads(config.threads);
  PipelineOptions po;
  po.model.dtype = "bfloat16";
  po.model.weights = "bfloat16";
  po.model.context_length = config.context_length;
  po.model.progress = config.progress;
  return std::make_unique<CudaModel>(Pipeline::load(config.model_dir, po), std::move(ops),
                                     config.model_dir);
}

#else  // a build without nvcc

bool cuda_decoder_available(std::string* why) {
  if (why != nullptr)
    *why = "this build has no CUDA kernels (nvcc was not found when it was built)";
  return false;
}

std::unique_ptr<EngineModel> load_cuda_engine_model(const EngineConfig&,
                                                    std::unique_ptr<kernels::cuda::DecoderOps>) {
  throw Error(
      "--device cuda: this build has no CUDA kernels (nvcc was not found when it was "
      "built)");
}

#endif

std::unique_ptr<EngineModel> load_device_engine_model(const EngineConfig& config) {
  if (config.device == "cpu") return nullptr;
  if (config.device != "cuda" && config.device != "auto") {
    throw Error("--device must be cpu, cuda or auto, got '" + config.device + "'");
  }
  std::string why;
  if (!cuda_decoder_available(&why)) {
    if (config.device == "cuda") throw Error("--device cuda: " + why);
    return nullptr;
  }
#if FLAMINGO_HAVE_CUDA_KERNELS
  return load_cuda_engine_model(config, kernels::cuda::make_device_ops(nullptr));
#else
  return nullptr;  // (cuda_decoder_available said no)
#endif
}

}  // namespace flamingo
