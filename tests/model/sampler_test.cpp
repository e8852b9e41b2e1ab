// Sampler: hand-checked cases for greedy, banned ids, repetition penalty, top-k/top-p
// support, seed determinism and validation messages; token_logprob against a hand value.
#include "model/sampler.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <set>

#include "model/error.h"

namespace flamingo {
namespace {

TEST(Sampler, GreedyPicksArgmaxAndSkipsBanned) {
  Sampler s(SamplingParams{});
  std::vector<float> logits = {0.1f, 3.f, 2.f, -1.f};
  EXPECT_EQ(s.next(logits, {}, {}), 1);
  std::vector<int32_t> banned = {1};
  EXPECT_EQ(s.next(logits, {}, banned), 2);
}

TEST(Sampler, RepetitionPenaltyDividesPositiveMultipliesNegative) {
  SamplingParams p;
  p.repetition_penalty = 2.f;
  Sampler s(p);
  // 3.0 -> 1.5 (seen), 2.0 stays: greedy picks id 2.
  std::vector<float> logits = {3.f, -1.f, 2.f};
  std::vector<int32_t> history = {0, 0, 1};
  EXPECT_EQ(s.next(logits, history, {}), 2);
  // Negative logits are multiplied: a seen -1 becomes -2 and falls below an unseen -1.5.
  std::vector<float> neg = {-1.f, -1.5f};
  std::vector<int32_t> h0 = {0};
  EXPECT_EQ(s.next(neg, h0, {}), 1);  // -1 * 2 = -2 < -1.5
}

TEST(Sampler, TopKAndTopPRestrictTheSupport) {
  std::vector<float> logits = {2.f, 1.9f, 0.f, -5.f};
  SamplingParams k;
  k.temperature = 1.f;
  k.top_k = 2;
  k.seed = 7;
  Sampler sk(k);
  std::set<int32_t> seen;
  for (int i = 0; i < 300; ++i) seen.insert(sk.next(logits, {}, {}));
  EXPECT_EQ(seen, (std::set<int32_t>{0, 1}));
  SamplingParams p;
  p.temperature = 1.f;
  p.top_p = 0.1f;  // the top token alone holds > 10% of the mass
  p.seed = 7;
  Sampler sp(p);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(sp.next(logits, {}, {}), 0);
}

TEST(Sampler, SameSeedSameDrawsAndFrequenciesFollowSoftmax) {
  std::vector<float> logits = {0.f, std::log(3.f)};  // p = 0.25, 0.75
  SamplingParams p;
  p.temperature = 1.f;
  p.seed = 42;
  Sampler a(p), b(p);
  int ones = 0;
  for (int i = 0; i < 4000; ++i) {
    int32_t x = a.next(logits, {}, {});
    EXPECT_EQ(x, b.next(logits, {}, {}));
    ones += x;
  }
  EXPECT_NEAR(ones / 4000.0, 0.75, 0.03);  // 4.4 sigma of a binomial(4000, 0.75)
}

TEST(Sampler, ValidationNamesFieldAndValue) {
  SamplingParams p;
  p.top_p = std::nanf("");
  try {
    p.validate();
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("top_p"), std::string::npos);
  }
  p = SamplingParams{};
  p.temperature = -1.f;
  EXPECT_THROW(p.validate(), Error);
  p = SamplingParams{};
  p.top_k = -3;
  EXPECT_THROW(p.validate(), Error);
  p = SamplingParams{};
  p.repetition_penalty = 0.f;
  EXPECT_THROW(p.validate(), Error);
}

TEST(Sampler, TokenLogprobIsLogSoftmax) {
  std::vector<float> logits = {1.f, 2.f, 3.f};
  const double expected = 1.0 - std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0));
  EXPECT_NEAR(token_logprob(logits, 0), expected, 1e-12);
  auto top = top_logprobs(logits, 2);
  ASSERT_EQ(top.size(), 2u);
  EXPECT_EQ(top[0].first, 2);
  EXPECT_EQ(top[1].first, 1);
}

}  // namespace
}  // namespace flamingo
