// What the engine asks of a model: the one seam between the engine's bookkeeping (torch-free:
// inbox, scheduler, media cache, sampling, text) and the tensors. The engine calls it on its
// own thread; the const accessors may be called from any thread (they read immutable state).
//
//   load_engine_model()  the real one (engine_model_pipeline.cpp): a Pipeline (tokenizer,
//                        FlamingoModel, preprocessing), the paged KV pool, and the encoded
//                        images (cross-attention K/V) by media cache slot;
//   a fake               tests/server/engine/fake_engine_model.h: scripted logits, so that
//                        scheduling, preemption, stops, Score and failures have unit tests
//                        without weights.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "model/batch.h"
#include "model/family_defaults.h"
#include "model/image_preprocess.h"
#include "model/prompt.h"
#include "model/tokenizer.h"
#include "server/engine/engine.h"
#include "server/engine/job.h"

namespace flamingo {

class EngineModel {
 public:
  virtual ~EngineModel() = default;

  // ---- what the model is (immutable after load) ----
  virtual const Tokenizer& tokenizer() const = 0;
  virtual const ImagePreprocessConfig& image_config() const = 0;
  virtual const FamilyDefaults& defaults() const = 0;
  // The fields of ModelDescription the model knows (family through kernel_isa, image_bytes);
  // the engine adds the cache sizes.
  virtual ModelDescription describe() const = 0;
  virtual int64_t context_length() const = 0;
  virtual int64_t vocab_size() const = 0;  // columns of forward()'s logits
  // Bytes of one KV block of `block_size` tokens over all layers, and of one encoded image.
  virtual int64_t kv_block_bytes(int32_t block_size) const = 0;
  virtual int64_t image_kv_bytes() const = 0;
  // Token ids and image indices of a prompt (the warm-up request's). Throws Error.
  virtual TokenizedPrompt tokenize(const std::vector<PromptItem>& items,
                                   size_t num_images) const = 0;

  // ---- state (engine thread only) ----
  // Allocates the paged KV pool once, before the first forward.
  virtual void allocate_kv(int64_t num_blocks, int32_t block_size) = 0;
  // Encodes `images` in one batch and stores each one's K/V at the matching slot, replacing
  // what the slot held. Throws (flamingo::Error, or the model's error) with no slot changed.
  virtual void encode_images(std::span<const ImageInput* const> images,
                             std::span<const int32_t> slots) = 0;
  virtual bool has_image(int32_t slot) const = 0;
  virtual void drop_image(int32_t slot) = 0;
  // One forward of a flattened batch; the forward's image i (FlatBatch::image_of_token) is
  // the one stored at image_slots[i]. Returns the logits of batch.logit_rows, row-major
  // [rows][vocab_size()], valid until the next call. Throws on failure.
  virtual std::span<const float> forward(const FlatBatch& batch,
                                         std::span<const int32_t> image_slots) = 0;
};

// The real model for `config` (model_dir, dtype, weights, context_length, threads, progress).
// Throws flamingo::Error on a bad model folder.
std::unique_ptr<EngineModel> load_engine_model(const EngineConfig& config);

}  // namespace flamingo
