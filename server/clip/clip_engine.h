// The CLIP engine: one thread that owns a ClipModel and embeds images and texts in batches.
// Jobs queue from any thread; each turn the thread takes every queued job (up to the batch
// limits), embeds all their distinct images not in its embedding cache as one batch and all
// their texts as one batch (texts of one length run together; results are the same bits alone
// or in any batch), and hands each job its outcome. The embedding cache is a MediaCache
// (server/engine/media_cache.h) over image content keys: an image embedded once is not
// computed again while it stays cached. Torch-free facade (the implementation includes ATen).
//
// Thread-safety: every public method is thread-safe; callbacks run on the engine thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "model/image_preprocess.h"
#include "server/engine/job.h"

namespace flamingo {

class ClipTokenizer;

struct ClipEngineConfig {
  std::string model_dir;
  std::string dtype = "auto";      // auto | float32 | bfloat16
  std::string weights = "auto";    // as for the Flamingo engine
  int32_t threads = 0;             // CPU threads for the model (process-wide); 0: one per core
  int64_t cache_bytes = 16 << 20;  // image embeddings cached (projection_dim floats each)
  int32_t max_batch = 64;          // images (and, separately, texts) per model call
  std::function<void(int64_t, int64_t)> progress;  // weights loaded: bytes done, total
};

struct ClipDescription {
  std::string model_dir, dtype;
  int64_t projection_dim = 0, image_size = 0, context_length = 0;
  double logit_scale = 1.0;  // exp(logit_scale)
};

struct EmbedJob {
  std::vector<ImageInput> images;           // preprocessed (ClipEngine::image_config())
  std::vector<std::vector<int32_t>> texts;  // token ids with start and end tokens
  std::vector<int32_t> truncated;           // indices of texts cut to the context
};

struct EmbedOutcome {
  bool ok = false;
  std::string message;                                                // when !ok
  std::vector<std::vector<float>> image_embeddings, text_embeddings;  // L2-normalized
};

struct ClipStats {
  int64_t images_embedded = 0;  // computed by the model (cache misses)
  int64_t image_cache_hits = 0;
  int64_t texts_embedded = 0;
  int64_t batches = 0;  // model calls
};

class ClipEngine {
 public:
  // Loads the CLIP folder and starts the thread. Throws flamingo::Error on a bad folder.
  static std::unique_ptr<ClipEngine> start(const ClipEngineConfig& config);
  virtual ~ClipEngine() = default;  // finishes queued jobs, then stops the thread

  virtual const ClipDescription& description() const = 0;
  virtual const ClipTokenizer& tokenizer() const = 0;
  virtual const ImagePreprocessConfig& image_config() const = 0;

  // Queues a job; `done` gets its outcome exactly once, on the engine thread.
  virtual void submit(EmbedJob job, std::function<void(EmbedOutcome)> done) = 0;
  virtual ClipStats stats() const = 0;
};

}  // namespace flamingo
