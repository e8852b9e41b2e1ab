// The single-sequence reference generator of the tests: a deliberately simple loop over
// FlamingoModel (prefill the prompt in one flattened forward, then one decode step per token
// through the paged KV cache, reusing each image's cross-attention K/V; the whole text decoded
// and cut at stop strings after every token) that the engine's results are compared with.
// The server and the CLI do not use it: their one generation path is server/engine.
// Stateless functions; each call owns its KvCache.
#pragma once

#include <string>
#include <vector>

#include "model/flamingo.h"
#include "model/pipeline.h"
#include "model/sampler.h"

namespace flamingo {

class Tokenizer;

// A prompt ready for the model: token ids, the image each token attends to (-1: none) and
// the K/V of those images, in prompt order.
struct PreparedPrompt {
  std::vector<int32_t> ids;
  std::vector<int32_t> image_of_token;
  std::vector<ImageKV> images;
};

// pipeline.tokenize() + image encoding: pixels -> vision -> perceiver -> cross-attention K/V.
PreparedPrompt prepare(const Pipeline& pipeline, const std::vector<PromptItem>& items,
                       const std::vector<RgbImage>& images);

struct GenerationOptions {
  int32_t max_new_tokens = 32;
  SamplingParams sampling;
  std::vector<std::string> stop;    // stop strings, matched on the decoded text
  std::vector<int32_t> stop_ids;    // e.g. </s>, <end_of_utterance>
  bool ignore_eos = false;          // when set, stop_ids are not honoured
  std::vector<int32_t> banned_ids;  // never sampled (<image>, <fake_token_around_image>)
  int32_t top_logprobs = 0;
  int64_t block_size = 16;
};

struct GenerationResult {
  std::vector<int32_t> token_ids;
  std::vector<double> logprobs;  // log_softmax of the raw logits at the chosen token
  std::vector<std::vector<std::pair<int32_t, double>>> top_logprobs;
  std::string text;           // decode(token_ids, skip_special_tokens) cut before a stop string
  std::string finish_reason;  // "length" or "stop"
};

// The options a generation with the family's stop and banned ids starts from.
GenerationOptions with_defaults(const FamilyDefaults& defaults);

// Throws Error when the prompt plus max_new_tokens exceeds the context length.
// `tokenizer` may be null: then stop strings are ignored and text stays empty.
GenerationResult generate(const FlamingoModel& model, const Tokenizer* tokenizer,
                          const PreparedPrompt& prompt, const GenerationOptions& options);

// log p(ids[i] | ids[<i]) for every prompt token; entry 0 is NaN (no context).
std::vector<double> prompt_logprobs(const FlamingoModel& model, const PreparedPrompt& prompt,
                                    int64_t block_size = 16);

// Several prompts sharing one image list scored in ONE flattened forward:
// result[s][i] = log p(ids_s[i] | ids_s[<i]) (entry 0 NaN).
std::vector<std::vector<double>> batch_prompt_logprobs(
    const FlamingoModel& model, const std::vector<std::vector<int32_t>>& ids,
    const std::vector<std::vector<int32_t>>& image_of_token, const std::vector<ImageKV>& images,
    int64_t block_size = 16);

// generate() with the pipeline's model and tokenizer.
GenerationResult generate(const Pipeline& pipeline, const PreparedPrompt& prompt,
                          const GenerationOptions& options);

}  // namespace flamingo
