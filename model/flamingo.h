// The IDEFICS model (transformers' IdeficsForVisionText2Text, v4.44.2): vision tower ->
// perceiver resampler -> per-image cross-attention K/V for every gated layer, and a LLaMA
// decoder with a gated cross-attention layer before every cross_layer_interval-th layer.
// Loaded once from an HF checkpoint folder and immutable afterwards (weights are shared,
// per-request state - KV cache, image K/V - is passed in). forward() mutates only the
// KvCache it is given; it is not meant to run on two threads with the same cache.
#pragma once

#include <ATen/ATen.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "model/batch.h"
#include "model/clip_vision.h"
#include "model/config.h"
#include "model/gated_cross_attention.h"
#include "model/kv_cache.h"
#include "model/llama_decoder.h"
#include "model/perceiver_resampler.h"

namespace flamingo {

struct ModelOptions {
  std::string dtype = "auto";      // auto | float32 | bfloat16: activations and compute
  std::string weights = "auto";    // auto | float32 | bfloat16 | int8: how linear weights are held
  int64_t context_length = 0;      // 0: max_position_embeddings from config.json, else 2048
  int64_t memory_limit_bytes = 0;  // 0: MemAvailable from /proc/meminfo; tests set it
  // Called while weights load: bytes done, bytes total.
  std::function<void(int64_t, int64_t)> progress;
};

// MemAvailable from /proc/meminfo in bytes (-1 when unknown): what a load may still allocate.
int64_t memory_available_bytes();

// Cross-attention K/V of one image for every gated layer: kv[j] = {K, V}, each [H, L, hd].
struct ImageKV {
  std::vector<std::pair<at::Tensor, at::Tensor>> kv;
  int64_t bytes() const;
};

// Names an intermediate activation: "embeddings", "layer_input.<i>" (input of decoder layer
// i), "gated.<i>" (output of the gated cross-attention layer before decoder layer i),
// "final_norm" (the final norm over every row). Tensors are [T, hidden].
using DebugHook = std::function<void(const std::string& name, const at::Tensor& value)>;

class FlamingoModel {
 public:
  // Throws Error for missing/corrupt files, missing tensors, wrong shapes, bad config.
  static std::unique_ptr<FlamingoModel> load(const std::string& dir, const ModelOptions& options);

  const ModelConfig& config() const { return config_; }
  at::ScalarType dtype() const { return dtype_; }
  kernels::WeightType weight_type() const { return weight_type_; }
  int64_t context_length() const { return context_length_; }
  const std::string& dir() const { return dir_; }
  int64_t weight_bytes() const { return weight_bytes_; }
  // Memory the serving caches need: one image's cross-attention K/V for every gated layer
  // (what image_kv() returns), and one paged self-attention KV block of block_size tokens.
  int64_t image_kv_bytes() const;
  int64_t kv_block_bytes(int64_t block_size) const;

  // pixel_values [N, 3, S, S] -> vision last_hidden_state [N, P+1, E]
  at::Tensor encode_vision(const at::Tensor& pixel_values) const;
  // vision features [N, P+1, E] -> image latents [N, L, E] (identity without a resampler)
  at::Tensor resample(const at::Tensor& features) const;
  // latents [L, E] of one image -> K/V for every gated layer.
  ImageKV image_kv(const at::Tensor& latents) const;
  // pixel_values [N, 3, S, S] -> one ImageKV per image (vision + perceiver + K/V).
  std::vector<ImageKV> encode_images(const at::Tensor& pixel_values) const;

  // One step over a flattened batch. Writes the step's K/V into `cache` at batch.slots and
  // returns float32 logits [batch.logit_rows.size(), total_vocab].
  at::Tensor forward(const FlatBatch& batch, KvCache& cache,
                     const std::vector<const ImageKV*>& images, const DebugHook& hook = {}) const;

  // Sets the threads of LibTorch's ops and of the kernel pool (threads <= 0: one per core).
  static void set_threads(int threads);

  // Chooses the compute dtype: bfloat16 when the CPU has avx512_bf16 or AMX, else float32.
  static at::ScalarType auto_dtype();
  static at::ScalarType parse_dtype(const std::string& name);  // throws Error
  // --weights: auto holds linear weights in bfloat16 when the compute dtype is bfloat16 or the
  // checkpoint stores its linear weights in bfloat16 (used as stored, no copy), else float32
  // (float32 and float16 checkpoints computed in float32 keep their exact weights). Throws Error.
  static kernels::WeightType resolve_weights(const std::string& name, at::ScalarType compute,
                                             bool stored_bf16);

 private:
  FlamingoModel() = default;

  std::string dir_;
  ModelConfig config_;
  at::ScalarType dtype_ = at::kFloat;
  kernels::WeightType weight_type_ = kernels::WeightType::kFloat32;
  int64_t context_length_ = 0;
  int64_t weight_bytes_ = 0;
  std::unique_ptr<ClipVision> vision_;
  std::unique_ptr<PerceiverResampler> perceiver_;
  std::vector<GatedCrossAttention> gated_;  // gated_[j] runs before layer j * interval
  std::vector<LlamaDecoderLayer> layers_;
  at::Tensor embed_;               // [total_vocab, hidden] (embed_tokens ++ additional_embedding)
  kernels::PackedWeight lm_head_;  // [total_vocab, hidden] (lm_head ++ additional_fc)
  RmsNorm final_norm_;
  RotaryTables rope_;
};

}  // namespace flamingo
