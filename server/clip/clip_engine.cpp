// The CLIP engine's thread (clip_engine.h): batches of queued jobs, the image embedding cache.
#include "server/clip/clip_engine.h"

#include <ATen/ATen.h>
#include <spdlog/spdlog.h>

#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "model/clip_model.h"
#include "model/clip_tokenizer.h"
#include "model/error.h"
#include "server/engine/media_cache.h"

namespace flamingo {
namespace {

std::vector<float> row_of(const at::Tensor& t, int64_t i) {
  const at::Tensor r = t[i].contiguous();
  return {r.data_ptr<float>(), r.data_ptr<float>() + r.numel()};
}

class ClipEngineImpl final : public ClipEngine {
 public:
  explicit ClipEngineImpl(const ClipEngineConfig& config)
      : config_(config), cache_(std::max<int64_t>(config.cache_bytes, 1)) {
    FlamingoModel::set_threads(config.threads);
    ModelOptions o;
    o.dtype = config.dtype;
    o.weights = config.weights;
    o.progress = config.progress;
    model_ = ClipModel::load(config.model_dir, o);
    tokenizer_ = ClipTokenizer::load(config.model_dir);
    const ClipConfig& c = model_->config();
    image_config_ = load_clip_preprocess_config(config.model_dir, c.vision.image_size);
    desc_.model_dir = config.model_dir;
    desc_.dtype = model_->dtype() == at::kBFloat16 ? "bfloat16" : "float32";
    desc_.projection_dim = c.projection_dim;
    desc_.image_size = c.vision.image_size;
    desc_.context_length = c.text.max_position_embeddings;
    desc_.logit_scale = model_->logit_scale();
    embedding_bytes_ = c.projection_dim * static_cast<int64_t>(sizeof(float));
    if (tokenizer_->vocab_size() > c.text.vocab_size) {
      throw Error(config.model_dir + ": the tokenizer has " +
                  std::to_string(tokenizer_->vocab_size()) + " tokens but the text tower only " +
                  std::to_string(c.text.vocab_size) + " embedding rows");
    }
    thread_ = std::thread([this] { run(); });
  }

  ~ClipEngineImpl() override {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    wake_.notify_all();
    thread_.join();
  }

  const ClipDescription& description() const override { return desc_; }
  const ClipTokenizer& tokenizer() const override { return *tokenizer_; }
  const ImagePreprocessConfig& image_config() const override { return image_config_; }

  void submit(EmbedJob job, std::function<void(EmbedOutcome)> done) override {
    {
      std::lock_guard lock(mu_);
      queue_.push_back({std::move(job), std::move(done)});
    }
    wake_.notify_one();
  }

  ClipStats stats() const override {
    std::lock_guard lock(mu_);
    return stats_;
  }

 private:
  struct Queued {
    EmbedJob job;
    std::function<void(EmbedOutcome)> done;
  };

  void run() {
    for (;;) {
      std::vector<Queued> batch;
      {
        std::unique_lock lock(mu_);
        wake_.wait(lock, [this] { return stop_ || !queue_.empty(); });
        if (queue_.empty()) return;  // stopping, nothing left
        size_t images = 0, texts = 0;
        // Whole jobs, at least one, while the turn's images and texts stay within max_batch.
        while (!queue_.empty()) {
          const EmbedJob& j = queue_.front().job;
          if (!batch.empty() &&
              (images + j.images.size() > static_cast<size_t>(config_.max_batch) ||
               texts + j.texts.size() > static_cast<size_t>(config_.max_batch))) {
            break;
          }
          images += j.images.size();
          texts += j.texts.size();
          batch.push_back(std::move(queue_.front()));
          queue_.pop_front();
        }
      }
      turn(batch);
    }
  }

  // Embeds the jobs' images (distinct and uncached ones only) and texts, then answers them.
  void turn(std::vector<Queued>& batch) {
    std::vector<EmbedOutcome> outcomes(batch.size());
    try {
      std::unordered_map<uint64_t, std::vector<float>> by_key;
      std::vector<const ImageInput*> misses;
      std::vector<std::vector<int32_t>> texts;
      int64_t hits = 0;
      for (const Queued& q : batch) {
        for (const ImageInput& im : q.job.images) {
          if (by_key.count(im.key)) continue;
          if (auto it = cached_.find(im.key); it != cached_.end()) {
            by_key[im.key] = store_[it->second];
            ++hits;
            continue;
          }
          by_key[im.key];  // reserved: computed below
          misses.push_back(&im);
        }
        texts.insert(texts.end(), q.job.texts.begin(), q.job.texts.end());
      }
      int64_t batches = 0;
      if (!misses.empty()) {
        const int64_t s = image_config_.image_size;
        at::Tensor pixels = at::empty({static_cast<int64_t>(misses.size()), 3, s, s}, at::kFloat);
        for (size_t i = 0; i < misses.size(); ++i) {
          const std::vector<float>& p = misses[i]->pixels;
          if (static_cast<int64_t>(p.size()) != 3 * s * s) {
            throw Error("clip engine: image has " + std::to_string(p.size()) + " values");
          }
          std::memcpy(pixels[static_cast<int64_t>(i)].data_ptr<float>(), p.data(),
                      p.size() * sizeof(float));
        }
        const at::Tensor e = model_->image_embeds(pixels);
        ++batches;
        for (size_t i = 0; i < misses.size(); ++i) {
          by_key[misses[i]->key] = row_of(e, static_cast<int64_t>(i));
          remember(misses[i]->key, by_key[misses[i]->key]);
        }
      }
      at::Tensor text_embeds;
      if (!texts.empty()) {
        text_embeds = model_->text_embeds(texts);
        ++batches;
      }
      int64_t next_text = 0;
      for (size_t j = 0; j < batch.size(); ++j) {
        EmbedOutcome& o = outcomes[j];
        o.ok = true;
        for (const ImageInput& im : batch[j].job.images)
          o.image_embeddings.push_back(by_key[im.key]);
        for (size_t t = 0; t < batch[j].job.texts.size(); ++t) {
          o.text_embeddings.push_back(row_of(text_embeds, next_text++));
        }
      }
      std::lock_guard lock(mu_);
      stats_.images_embedded += static_cast<int64_t>(misses.size());
      stats_.image_cache_hits += hits;
      stats_.texts_embedded += static_cast<int64_t>(texts.size());
      stats_.batches += batches;
    } catch (const std::exception& e) {
      spdlog::error("clip engine: a batch of {} requests failed: {}", batch.size(), e.what());
      for (EmbedOutcome& o : outcomes) o = EmbedOutcome{false, e.what(), {}, {}};
    }
    for (size_t j = 0; j < batch.size(); ++j) {
      try {
        batch[j].done(std::move(outcomes[j]));
      } catch (const std::exception& e) {
        spdlog::error("clip engine: a request callback failed: {}", e.what());
      }
    }
  }

  // Keeps an image's embedding in the cache (least recently used ones make room).
  void remember(uint64_t key, const std::vector<float>& embedding) {
    const std::optional<MediaCache::Lookup> l = cache_.acquire(key, embedding_bytes_);
    for (int32_t evicted : cache_.take_evicted()) cached_.erase(key_of_slot_[evicted]);
    if (!l) return;  // larger than the whole cache: not kept
    if (store_.size() <= static_cast<size_t>(l->slot)) {
      store_.resize(l->slot + 1);
      key_of_slot_.resize(l->slot + 1);
    }
    store_[l->slot] = embedding;
    key_of_slot_[l->slot] = key;
    cached_[key] = l->slot;
    cache_.release(l->slot);
  }

  ClipEngineConfig config_;
  std::unique_ptr<ClipModel> model_;
  std::unique_ptr<ClipTokenizer> tokenizer_;
  ImagePreprocessConfig image_config_;
  ClipDescription desc_;
  int64_t embedding_bytes_ = 0;

  mutable std::mutex mu_;
  std::condition_variable wake_;
  std::deque<Queued> queue_;
  bool stop_ = false;
  ClipStats stats_;
  std::thread thread_;

  // Engine thread only.
  MediaCache cache_;
  std::unordered_map<uint64_t, int32_t> cached_;  // key -> slot
  std::vector<std::vector<float>> store_;         // by slot
  std::vector<uint64_t> key_of_slot_;             // by slot
};

}  // namespace

std::unique_ptr<ClipEngine> ClipEngine::start(const ClipEngineConfig& config) {
  return std::make_unique<ClipEngineImpl>(config);
}

}  // namespace flamingo
