// A fake EngineModel for unit tests of the engine without weights (server/engine/engine_model.h).
// It has the golden checkpoint's tokenizer (files only, no weights) and a model of its own:
//   - its "KV pool" holds, per slot, the token written there;
//   - each logits row reads its sequence's whole history back from the pool through the block
//     table (a slot never written is an error), hashes it together with the row's image, and
//     puts a logit of 10 on the token the hash picks among a few ordinary ones (0 elsewhere);
//   - an "image" is the sum of its pixels.
// So a request's greedy tokens depend on exactly what the engine stored for it: paged KV
// bookkeeping, prefix caching, preemption and image slots are checked by comparing tokens with
// expected(), which computes the same rule on the plain token list. It counts what it did
// (forwards, tokens, rows, images encoded) and can be told to fail.
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <functional>
#include <mutex>
#include <numeric>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "model/error.h"
#include "server/engine/engine_model.h"

namespace flamingo::testing {

class FakeEngineModel final : public EngineModel {
 public:
  static constexpr int32_t kNoImage = -1;

  explicit FakeEngineModel(const std::string& tokenizer_dir)
      : tokenizer_(Tokenizer::load(tokenizer_dir)) {
    image_config_.image_size = 2;
    vocab_ = tokenizer_->size();
    defaults_.stop_ids = {tokenizer_->eos_id()};
    // Ordinary pieces the script chooses among: ids 100.. (no special tokens there).
    for (int32_t id = 100; id < 100 + 7; ++id) choices_.push_back(id);
  }

  // ---- the rule ----
  // The next token after `history` (prompt + generated so far) whose last token sees image
  // content `image` (kNoImage: none): ends with EOS once the history is eos_at long.
  int32_t next_token(const std::vector<int32_t>& history, double image) const {
    if (eos_at > 0 && static_cast<int32_t>(history.size()) >= eos_at) return tokenizer_->eos_id();
    uint64_t h = 1469598103934665603ull;
    for (int32_t t : history) h = (h ^ static_cast<uint64_t>(t)) * 1099511628211ull;
    if (image != kNoImage) h = (h ^ static_cast<uint64_t>(std::llround(image * 16))) * 31;
    return choices_[h % choices_.size()];
  }
  // The tokens a greedy generation of `max_new` tokens gives for `prompt` (every token seeing
  // `image`), stopping after EOS.
  std::vector<int32_t> expected(std::vector<int32_t> prompt, int32_t max_new,
                                double image = kNoImage) const {
    std::vector<int32_t> out;
    while (static_cast<int32_t>(out.size()) < max_new) {
      const int32_t t = next_token(prompt, image);
      out.push_back(t);
      prompt.push_back(t);
      if (t == tokenizer_->eos_id()) break;
    }
    return out;
  }
  // log p(token | history) under the rule's logits (10 on the chosen token, 0 elsewhere).
  double logprob(const std::vector<int32_t>& history, int32_t token, double image) const {
    const double lse = std::log(std::exp(10.0) + static_cast<double>(vocab_ - 1));
    return (token == next_token(history, image) ? 10.0 : 0.0) - lse;
  }

  // ---- knobs and counters (set before the engine starts; read after jobs end) ----
  int32_t eos_at = 0;                           // > 0: EOS once the history has this length
  std::function<void(int64_t forward)> before;  // may throw: the forward fails
  double failing_image = std::nan("");          // an image with this content fails to encode
  std::atomic<int64_t> forwards{0}, tokens{0}, rows{0}, images_encoded{0}, encode_calls{0};
  std::atomic<int32_t> max_tokens_in_a_forward{0}, max_seqs_in_a_forward{0};

  // ---- EngineModel ----
  const Tokenizer& tokenizer() const override { return *tokenizer_; }
  const ImagePreprocessConfig& image_config() const override { return image_config_; }
  const FamilyDefaults& defaults() const override { return defaults_; }
  ModelDescription describe() const override {
    ModelDescription d;
    d.family = "fake";
    d.vocab_size = vocab_;
    d.image_size = image_config_.image_size;
    d.context_length = context_length();
    d.dtype = d.weights = "float32";
    d.image_bytes = image_kv_bytes();
    return d;
  }
  int64_t context_length() const override { return 256; }
  int64_t vocab_size() const override { return vocab_; }
  int64_t kv_block_bytes(int32_t block_size) const override { return 1024 * block_size; }
  int64_t image_kv_bytes() const override { return 4096; }
  TokenizedPrompt tokenize(const std::vector<PromptItem>&, size_t) const override {
    throw Error("fake model: no prompt layout (start the engine with warm_up = false)");
  }

  void allocate_kv(int64_t num_blocks, int32_t block_size) override {
    block_size_ = block_size;
    kv_.assign(static_cast<size_t>(num_blocks * block_size), -1);
  }
  void encode_images(std::span<const ImageInput* const> images,
                     std::span<const int32_t> slots) override {
    encode_calls++;
    std::vector<double> content;
    for (const ImageInput* im : images) {
      const double c = std::accumulate(im->pixels.begin(), im->pixels.end(), 0.0);
      if (c == failing_image) throw Error("fake model: this image fails to encode");
      content.push_back(c);
    }
    for (size_t i = 0; i < slots.size(); ++i) {
      if (store_.size() <= static_cast<size_t>(slots[i])) store_.resize(slots[i] + 1);
      store_[slots[i]] = content[i];
    }
    images_encoded += static_cast<int64_t>(images.size());
  }
  bool has_image(int32_t slot) const override {
    return slot >= 0 && static_cast<size_t>(slot) < store_.size() && store_[slot].has_value();
  }
  void drop_image(int32_t slot) override {
    if (has_image(slot)) store_[slot].reset();
  }

  std::span<const float> forward(const FlatBatch& b, std::span<const int32_t> slots) override {
    const int64_t n = ++forwards;
    if (before) before(n);
    const int64_t t = b.num_tokens();
    tokens += t;
    rows += static_cast<int64_t>(b.logit_rows.size());
    max_tokens_in_a_forward = std::max<int32_t>(max_tokens_in_a_forward, static_cast<int32_t>(t));
    max_seqs_in_a_forward =
        std::max<int32_t>(max_seqs_in_a_forward, static_cast<int32_t>(b.num_seqs()));
    for (int64_t i = 0; i < t; ++i) kv_.at(b.slots[i]) = b.token_ids[i];
    logits_.assign(b.logit_rows.size() * static_cast<size_t>(vocab_), 0.f);
    for (size_t j = 0; j < b.logit_rows.size(); ++j) {
      const int32_t r = b.logit_rows[j];
      const std::vector<int32_t>& table = b.block_tables.at(b.seq_of_token[r]);
      std::vector<int32_t> history;
      for (int32_t q = 0; q <= b.positions[r]; ++q) {
        const int64_t slot =
            static_cast<int64_t>(table.at(q / block_size_)) * block_size_ + q % block_size_;
        if (kv_.at(slot) < 0) throw Error("fake model: KV slot read before it was written");
        history.push_back(kv_[slot]);
      }
      double image = kNoImage;
      if (b.image_of_token[r] >= 0) image = *store_.at(slots[b.image_of_token[r]]);
      logits_[j * vocab_ + next_token(history, image)] = 10.f;
    }
    return logits_;
  }

 private:
  std::unique_ptr<Tokenizer> tokenizer_;
  ImagePreprocessConfig image_config_;
  FamilyDefaults defaults_;
  std::vector<int32_t> choices_;
  int64_t vocab_ = 0;
  int32_t block_size_ = 1;
  std::vector<int32_t> kv_;                   // token per KV slot, -1 = never written
  std::vector<std::optional<double>> store_;  // image content per media slot
  std::vector<float> logits_;
};

}  // namespace flamingo::testing
