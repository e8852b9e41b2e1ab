#include "tests/common/reference_generation.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "model/error.h"
#include "model/tokenizer.h"

namespace flamingo {
namespace {

int64_t blocks_for(int64_t tokens, int64_t block_size) {
  return (tokens + block_size - 1) / block_size;
}

std::vector<const ImageKV*> image_pointers(const std::vector<ImageKV>& images) {
  std::vector<const ImageKV*> out;
  for (const auto& i : images) out.push_back(&i);
  return out;
}

// Appends tokens [begin, end) of one sequence to `batch`, with KV slots from its table.
void append_tokens(FlatBatch& batch, int32_t seq, const std::vector<int32_t>& ids,
                   const std::vector<int32_t>& images, int64_t begin, int64_t end,
                   int64_t block_size) {
  const auto& table = batch.block_tables[seq];
  for (int64_t i = begin; i < end; ++i) {
    batch.token_ids.push_back(ids[i]);
    batch.positions.push_back(static_cast<int32_t>(i));
    batch.seq_of_token.push_back(seq);
    batch.slots.push_back(static_cast<int64_t>(table[i / block_size]) * block_size +
                          i % block_size);
    batch.image_of_token.push_back(images[i]);
  }
}

void check_prompt(const FlamingoModel& model, const PreparedPrompt& p, int64_t extra) {
  if (p.ids.empty()) throw Error("prompt: empty (no tokens)");
  if (p.ids.size() != p.image_of_token.size()) {
    throw Error("prompt: image_of_token has " + std::to_string(p.image_of_token.size()) +
                " entries for " + std::to_string(p.ids.size()) + " tokens");
  }
  const int64_t need = static_cast<int64_t>(p.ids.size()) + extra;
  if (need > model.context_length()) {
    throw Error("prompt: " + std::to_string(p.ids.size()) + " prompt tokens + " +
                std::to_string(extra) + " new tokens exceed the context length " +
                std::to_string(model.context_length()));
  }
}

}  // namespace

GenerationResult generate(const FlamingoModel& model, const Tokenizer* tokenizer,
                          const PreparedPrompt& prompt, const GenerationOptions& options) {
  if (options.max_new_tokens < 1) {
    throw Error("max_new_tokens must be >= 1, got " + std::to_string(options.max_new_tokens));
  }
  options.sampling.validate();
  check_prompt(model, prompt, options.max_new_tokens);
  const int64_t bs = options.block_size;
  const int64_t total = static_cast<int64_t>(prompt.ids.size()) + options.max_new_tokens;
  KvCache cache(model.config(), blocks_for(total, bs), bs, model.dtype());
  std::vector<const ImageKV*> images = image_pointers(prompt.images);

  FlatBatch batch;
  batch.block_tables.emplace_back();
  for (int64_t b = 0; b < blocks_for(total, bs); ++b) {
    batch.block_tables[0].push_back(static_cast<int32_t>(b));
  }
  std::vector<int32_t> ids = prompt.ids;
  std::vector<int32_t> img = prompt.image_of_token;
  // New tokens see what the last prompt token sees (transformers copies the last mask row).
  const int32_t gen_image = img.back();
  append_tokens(batch, 0, ids, img, 0, static_cast<int64_t>(ids.size()), bs);
  batch.logit_rows = {static_cast<int32_t>(ids.size()) - 1};

  GenerationResult out;
  out.finish_reason = "length";
  Sampler sampler(options.sampling);
  bool stopped_by_string = false;
  for (int32_t step = 0; step < options.max_new_tokens; ++step) {
    at::Tensor logits = model.forward(batch, cache, images).contiguous();
    std::span<const float> row(logits.data_ptr<float>(), logits.size(1));
    const int32_t token = sampler.next(row, ids, options.banned_ids);
    out.token_ids.push_back(token);
    out.logprobs.push_back(token_logprob(row, token));
    if (options.top_logprobs > 0)
      out.top_logprobs.push_back(top_logprobs(row, options.top_logprobs));
    ids.push_back(token);
    img.push_back(gen_image);
    bool stop = false;
    if (!options.ignore_eos) {
      for (int32_t s : options.stop_ids) stop |= token == s;
    }
    // Stop strings need the text so far; without them the text is decoded once at the end.
    if (tokenizer != nullptr && !options.stop.empty()) {
      std::string text = tokenizer->decode(out.token_ids, /*skip_special_tokens=*/true);
      size_t cut = std::string::npos;  // the earliest occurrence of any stop string
      for (const std::string& s : options.stop) {
        if (!s.empty()) cut = std::min(cut, text.find(s));
      }
      if (cut != std::string::npos) {
        text.resize(cut);
        out.text = std::move(text);
        stopped_by_string = stop = true;
      }
    }
    if (stop) {
      out.finish_reason = "stop";
      break;
    }
    if (step + 1 == options.max_new_tokens) break;
    batch.token_ids.clear();
    batch.positions.clear();
    batch.seq_of_token.clear();
    batch.slots.clear();
    batch.image_of_token.clear();
    append_tokens(batch, 0, ids, img, static_cast<int64_t>(ids.size()) - 1,
                  static_cast<int64_t>(ids.size()), bs);
    batch.logit_rows = {0};
  }
  if (tokenizer != nullptr && !stopped_by_string) {
    out.text = tokenizer->decode(out.token_ids, /*skip_special_tokens=*/true);
  }
  return out;
}

std::vector<std::vector<double>> batch_prompt_logprobs(
    const FlamingoModel& model, const std::vector<std::vector<int32_t>>& ids,
    const std::vector<std::vector<int32_t>>& image_of_token, const std::vector<ImageKV>& images,
    int64_t block_size) {
  FlatBatch batch;
  int32_t next_block = 0;
  for (size_t s = 0; s < ids.size(); ++s) {
    PreparedPrompt p{ids[s], image_of_token[s], {}};
    check_prompt(model, p, 0);
    batch.block_tables.emplace_back();
    for (int64_t b = 0; b < blocks_for(static_cast<int64_t>(ids[s].size()), block_size); ++b) {
      batch.block_tables.back().push_back(next_block++);
    }
    const int32_t first = static_cast<int32_t>(batch.token_ids.size());
    append_tokens(batch, static_cast<int32_t>(s), ids[s], image_of_token[s], 0,
                  static_cast<int64_t>(ids[s].size()), block_size);
    for (size_t i = 0; i < ids[s].size(); ++i) batch.logit_rows.push_back(first + i);
  }
  KvCache cache(model.config(), std::max(next_block, 1), block_size, model.dtype());
  at::Tensor logits = model.forward(batch, cache, image_pointers(images)).contiguous();
  std::vector<std::vector<double>> out;
  int64_t row = 0;
  for (const auto& seq : ids) {
    std::vector<double> lp(seq.size(), std::numeric_limits<double>::quiet_NaN());
    for (size_t i = 0; i < seq.size(); ++i, ++row) {
      if (i + 1 < seq.size()) {
        std::span<const float> r(logits.data_ptr<float>() + row * logits.size(1), logits.size(1));
        lp[i + 1] = token_logprob(r, seq[i + 1]);
      }
    }
    out.push_back(std::move(lp));
  }
  return out;
}

std::vector<double> prompt_logprobs(const FlamingoModel& model, const PreparedPrompt& prompt,
                                    int64_t block_size) {
  return batch_prompt_logprobs(model, {prompt.ids}, {prompt.image_of_token}, prompt.images,
                               block_size)[0];
}

PreparedPrompt prepare(const Pipeline& pipeline, const std::vector<PromptItem>& items,
                       const std::vector<RgbImage>& images) {
  TokenizedPrompt t = pipeline.tokenize(items, images.size());
  PreparedPrompt p{std::move(t.token_ids), std::move(t.image_of_token), {}};
  if (!images.empty()) {
    const int64_t s = pipeline.image_config().image_size;
    at::Tensor pixels = at::empty({static_cast<int64_t>(images.size()), 3, s, s}, at::kFloat);
    for (size_t i = 0; i < images.size(); ++i) {
      std::vector<float> chw = preprocess_image(images[i], pipeline.image_config());
      std::memcpy(pixels[i].data_ptr<float>(), chw.data(), chw.size() * sizeof(float));
    }
    p.images = pipeline.model().encode_images(pixels);
  }
  return p;
}

GenerationOptions with_defaults(const FamilyDefaults& defaults) {
  GenerationOptions o;
  o.stop_ids = defaults.stop_ids;
  o.stop = defaults.stop;
  o.banned_ids = defaults.banned_ids;
  return o;
}

GenerationResult generate(const Pipeline& pipeline, const PreparedPrompt& prompt,
                          const GenerationOptions& options) {
  return generate(pipeline.model(), &pipeline.tokenizer(), prompt, options);
}

}  // namespace flamingo
