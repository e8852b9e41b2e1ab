// Next-token choice from raw logits: repetition penalty, then temperature, top-k and top-p
// (the order of transformers' logits processors and warpers), then greedy argmax
// (temperature 0) or a draw from the request's own seeded generator. Banned ids (e.g.
// <image>, <fake_token_around_image>) are never chosen. Torch-free. A Sampler holds one
// request's random state: not shared between threads.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <vector>

namespace flamingo {

struct SamplingParams {
  float temperature = 0.f;         // 0: greedy
  int32_t top_k = 0;               // 0: off
  float top_p = 1.f;               // 1: off
  float repetition_penalty = 1.f;  // 1: off
  uint64_t seed = 0;

  // Throws Error naming the field, the allowed range and the value (NaN included).
  void validate() const;
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);

  // logits: raw logits over the vocabulary; history: tokens so far (prompt + generated),
  // penalised when repetition_penalty != 1; banned: ids that are never returned.
  int32_t next(std::span<const float> logits, std::span<const int32_t> history,
               std::span<const int32_t> banned);

  const SamplingParams& params() const { return params_; }

 private:
  SamplingParams params_;
  std::mt19937_64 rng_;
  std::vector<float> work_;
  std::vector<int32_t> order_;
};

// log_softmax(logits)[id], computed in double (the logprob every response reports).
double token_logprob(std::span<const float> logits, int32_t id);

// The `n` most likely ids with their log-probabilities, most likely first.
std::vector<std::pair<int32_t, double>> top_logprobs(std::span<const float> logits, int32_t n);

}  // namespace flamingo
