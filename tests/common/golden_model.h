// Helpers for tests that run the golden IDEFICS checkpoints (tests/golden/idefics-tiny/<folder>):
// a model loaded once per test process for each folder, dtype and weight type, and a golden
// case's prompt as the generator takes it (ids, image index of each token, encoded images), and
// the logits of every position of such a prompt.
// Header-only; needs flamingo_model (torch).
// Thread-safety: golden_model() fills an unguarded cache: call it from one thread.
#pragma once

#include <ATen/ATen.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "model/flamingo.h"
#include "tests/common/golden.h"
#include "tests/common/reference_generation.h"

namespace flamingo::testing {

// The checkpoint in golden_path(folder) with ModelOptions dtype and weights, loaded on first use.
inline const FlamingoModel& golden_model(const std::string& folder, const std::string& dtype,
                                         const std::string& weights = "auto") {
  static std::map<std::string, std::unique_ptr<FlamingoModel>> cache;
  auto& m = cache[folder + "/" + dtype + "/" + weights];
  if (!m) {
    ModelOptions o;
    o.dtype = dtype;
    o.weights = weights;
    m = FlamingoModel::load(golden_path(folder), o);
  }
  return *m;
}

// Golden case `c` (cases/<c>/*.npy, batch row 0) as a prompt for `m`, its images encoded by `m`.
inline PreparedPrompt golden_prompt(const FlamingoModel& m, const std::string& c) {
  PreparedPrompt p;
  at::Tensor ids = load_tensor("cases/" + c + "/input_ids.npy")[0];
  for (int64_t i = 0; i < ids.size(0); ++i) p.ids.push_back(ids[i].item<int32_t>());
  p.image_of_token =
      image_of_token_from_mask(load_tensor("cases/" + c + "/image_attention_mask.npy")[0]);
  p.images = m.encode_images(load_tensor("cases/" + c + "/pixel_values.npy")[0]);
  return p;
}

// float32 logits [T, V] of every prompt position of `p`, one forward in fresh KV blocks.
inline at::Tensor prompt_logits(const FlamingoModel& m, const PreparedPrompt& p) {
  const int64_t bs = 8;
  const int64_t n = static_cast<int64_t>(p.ids.size());
  FlatBatch b;
  b.block_tables.emplace_back();
  for (int64_t blk = 0; blk < (n + bs - 1) / bs; ++blk) {
    b.block_tables[0].push_back(static_cast<int32_t>(blk));
  }
  for (int64_t i = 0; i < n; ++i) {
    b.token_ids.push_back(p.ids[i]);
    b.positions.push_back(static_cast<int32_t>(i));
    b.seq_of_token.push_back(0);
    b.slots.push_back(i);
    b.image_of_token.push_back(p.image_of_token[i]);
    b.logit_rows.push_back(static_cast<int32_t>(i));
  }
  std::vector<const ImageKV*> images;
  for (const auto& kv : p.images) images.push_back(&kv);
  KvCache cache(m.config(), (n + bs - 1) / bs, bs, m.dtype());
  return m.forward(b, cache, images);
}

}  // namespace flamingo::testing
