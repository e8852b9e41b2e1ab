#include "model/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "model/error.h"

namespace flamingo {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

void check_range(const char* field, float value, float lo, float hi, const char* range) {
  if (!(value >= lo && value <= hi)) {  // also rejects NaN
    throw Error(std::string(field) + " must be in " + range + ", got " + std::to_string(value));
  }
}

}  // namespace

void SamplingParams::validate() const {
  check_range("temperature", temperature, 0.f, 100.f, "[0, 100]");
  check_range("top_p", top_p, 0.f, 1.f, "(0, 1]");
  if (top_p <= 0.f) throw Error("top_p must be in (0, 1], got " + std::to_string(top_p));
  check_range("repetition_penalty", repetition_penalty, 0.f, 100.f, "(0, 100]");
  if (repetition_penalty <= 0.f) {
    throw Error("repetition_penalty must be in (0, 100], got " +
                std::to_string(repetition_penalty));
  }
  if (top_k < 0) throw Error("top_k must be >= 0, got " + std::to_string(top_k));
}

Sampler::Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) {}

int32_t Sampler::next(std::span<const float> logits, std::span<const int32_t> history,
                      std::span<const int32_t> banned) {
  const int32_t n = static_cast<int32_t>(logits.size());
  work_.assign(logits.begin(), logits.end());
  if (params_.repetition_penalty != 1.f) {
    for (int32_t id : history) {
      if (id < 0 || id >= n) continue;
      float& l = work_[id];
      // transformers' RepetitionPenaltyLogitsProcessor reads the raw logit even when an id
      // repeats in the history, so apply once per distinct id.
      l = logits[id] < 0 ? logits[id] * params_.repetition_penalty
                         : logits[id] / params_.repetition_penalty;
    }
  }
  for (int32_t id : banned) {
    if (id >= 0 && id < n) work_[id] = kNegInf;
  }
  if (params_.temperature == 0.f) {
    return static_cast<int32_t>(std::max_element(work_.begin(), work_.end()) - work_.begin());
  }
  for (float& l : work_) l /= params_.temperature;
  order_.resize(n);
  std::iota(order_.begin(), order_.end(), 0);
  std::stable_sort(order_.begin(), order_.end(),
                   [&](int32_t a, int32_t b) { return work_[a] > work_[b]; });
  int32_t keep = n;
  if (params_.top_k > 0) keep = std::min(keep, params_.top_k);
  // Probabilities of the kept candidates (descending order).
  const float max_l = work_[order_[0]];
  std::vector<double> probs(keep);
  double sum = 0;
  for (int32_t i = 0; i < keep; ++i) {
    probs[i] = work_[order_[i]] == kNegInf ? 0.0 : std::exp(double(work_[order_[i]]) - max_l);
    sum += probs[i];
  }
  if (params_.top_p < 1.f) {
    // Keep the smallest prefix whose mass reaches top_p (at least one token).
    double cum = 0;
    int32_t cut = keep;
    for (int32_t i = 0; i < keep; ++i) {
      cum += probs[i] / sum;
      if (cum >= params_.top_p) {
        cut = i + 1;
        break;
      }
    }
    keep = std::max(cut, 1);
    probs.resize(keep);
    sum = std::accumulate(probs.begin(), probs.end(), 0.0);
  }
  std::uniform_real_distribution<double> uni(0.0, sum);
  double r = uni(rng_);
  for (int32_t i = 0; i < keep; ++i) {
    r -= probs[i];
    if (r < 0 && probs[i] > 0) return order_[i];
  }
  for (int32_t i = keep - 1; i >= 0; --i) {
    if (probs[i] > 0) return order_[i];
  }
  return order_[0];
}

double token_logprob(std::span<const float> logits, int32_t id) {
  double max_l = -std::numeric_limits<double>::infinity();
  for (float l : logits) max_l = std::max(max_l, static_cast<double>(l));
  double sum = 0;
  for (float l : logits) sum += std::exp(static_cast<double>(l) - max_l);
  return static_cast<double>(logits[id]) - max_l - std::log(sum);
}

std::vector<std::pair<int32_t, double>> top_logprobs(std::span<const float> logits, int32_t n) {
  std::vector<int32_t> ids(logits.size());
  std::iota(ids.begin(), ids.end(), 0);
  n = std::min<int32_t>(n, static_cast<int32_t>(ids.size()));
  std::partial_sort(ids.begin(), ids.begin() + n, ids.end(),
                    [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  std::vector<std::pair<int32_t, double>> out;
  for (int32_t i = 0; i < n; ++i) out.emplace_back(ids[i], token_logprob(logits, ids[i]));
  return out;
}

}  // namespace flamingo
