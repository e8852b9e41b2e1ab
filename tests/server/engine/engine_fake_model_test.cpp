// The engine's step logic over a fake model (fake_engine_model.h): no weights, milliseconds per
// test. The fake's tokens depend on exactly what the engine stored for a request (its KV slots
// through the block table, its image slot), so scheduling, chunked prefill, preemption, prefix
// caching, image sharing, stops, cancellation, Score and fault isolation are checked by the
// tokens and log-probabilities the jobs get back.
#include <gtest/gtest.h>

#include <condition_variable>
#include <memory>
#include <mutex>
#include <numeric>
#include <thread>

#include "server/engine/collecting_sink.h"
#include "server/engine/engine.h"
#include "tests/server/engine/fake_engine_model.h"

namespace flamingo {
namespace {

using testing::FakeEngineModel;

const std::string kTokenizerDir = std::string(FLAMINGO_GOLDEN_DIR) + "/model";

EngineConfig small_config() {
  EngineConfig c;
  c.model_dir = "(fake)";
  c.warm_up = false;
  c.block_size = 4;
  c.token_budget = 16;
  c.limits.max_running_requests = 8;
  c.limits.max_queued_requests = 64;
  return c;
}

// Ordinary token ids, different for every `seed`.
std::vector<int32_t> prompt_of(int32_t seed, int32_t length) {
  std::vector<int32_t> p = {1};
  for (int32_t i = 1; i < length; ++i) p.push_back(200 + (seed * 7 + i * 13) % 500);
  return p;
}

GenerateJob job_of(std::vector<int32_t> prompt, int32_t max_new) {
  GenerateJob j;
  j.image_of_token.assign(prompt.size(), -1);
  j.prompt = std::move(prompt);
  j.max_new_tokens = max_new;
  j.sampling.seed = 1;
  return j;
}

// An image whose pixels sum to `content` (the fake model's view of an image).
ImageInput image_of(uint64_t key, float content) {
  ImageInput im;
  im.key = key;
  im.pixels.assign(3 * 2 * 2, 0.f);
  im.pixels[0] = content;
  return im;
}

GenerateJob job_with_image(std::vector<int32_t> prompt, int32_t max_new, ImageInput image) {
  GenerateJob j = job_of(std::move(prompt), max_new);
  std::fill(j.image_of_token.begin() + 1, j.image_of_token.end(), 0);  // all but <s> see it
  j.images.push_back(std::move(image));
  return j;
}

struct Started {
  FakeEngineModel* fake;  // owned by the engine
  std::unique_ptr<Engine> engine;
};

Started start(const EngineConfig& c, const std::function<void(FakeEngineModel&)>& setup = {}) {
  auto model = std::make_unique<FakeEngineModel>(kTokenizerDir);
  if (setup) setup(*model);
  FakeEngineModel* fake = model.get();
  return {fake, Engine::start(c, std::move(model))};
}

std::shared_ptr<CollectingSink> submit(Engine& engine, GenerateJob job) {
  auto sink = std::make_shared<CollectingSink>();
  const AdmissionResult r = engine.submit(std::move(job), sink);
  EXPECT_EQ(r.code, Admission::kAccepted) << r.message;
  return sink;
}

// The engine publishes its stats after a step's outcomes reach their sinks: waits (up to 1 s)
// for the KV blocks and the images running jobs hold to be free again.
EngineStats stats_after_idle(const Engine& engine) {
  for (int i = 0; i < 100; ++i) {
    const EngineStats st = engine.stats();
    if (st.kv_blocks_used == 0 && st.image_cache_referenced_bytes == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return engine.stats();
}
int32_t kv_blocks_used_after_idle(const Engine& engine) {
  return stats_after_idle(engine).kv_blocks_used;
}

TEST(EngineFakeModel, BatchedChunkedAndPreemptedRequestsGetTheirOwnTokens) {
  EngineConfig c = small_config();
  c.prefix_caching = false;
  c.kv_cache_bytes = 24 * 4 * 1024;  // 24 blocks of 4 tokens: 16 requests of 30 tokens preempt
  Started s = start(c);
  constexpr int kJobs = 16, kPrompt = 10, kNew = 20;
  std::vector<std::shared_ptr<CollectingSink>> sinks;
  for (int i = 0; i < kJobs; ++i)
    sinks.push_back(submit(*s.engine, job_of(prompt_of(i, kPrompt), kNew)));
  for (int i = 0; i < kJobs; ++i) {
    const JobOutcome& o = sinks[i]->wait();
    EXPECT_EQ(o.status, JobStatus::kLength) << i << ": " << o.message;
    EXPECT_EQ(o.token_ids, s.fake->expected(prompt_of(i, kPrompt), kNew)) << "request " << i;
  }
  // Without preemption every request computes prompt + generated - 1 tokens once.
  EXPECT_GT(s.fake->tokens.load(), kJobs * (kPrompt + kNew - 1)) << "no request was preempted";
  EXPECT_LE(s.fake->max_tokens_in_a_forward.load(), c.token_budget);
  EXPECT_LE(s.fake->max_seqs_in_a_forward.load(), c.limits.max_running_requests);
  EXPECT_GT(s.fake->max_seqs_in_a_forward.load(), 1) << "requests were never batched";
  EXPECT_EQ(kv_blocks_used_after_idle(*s.engine), 0);
}

TEST(EngineFakeModel, EosStopsUnlessIgnoredAndMaxNewTokensEnds) {
  Started s = start(small_config(), [](FakeEngineModel& f) { f.eos_at = 13; });
  const std::vector<int32_t> prompt = prompt_of(1, 10);
  auto stops = submit(*s.engine, job_of(prompt, 8));
  GenerateJob ignoring = job_of(prompt, 6);
  ignoring.ignore_eos = true;
  auto ignores = submit(*s.engine, std::move(ignoring));
  auto short_one = submit(*s.engine, job_of(prompt_of(2, 10), 2));

  const JobOutcome& a = stops->wait();
  EXPECT_EQ(a.status, JobStatus::kStop);
  ASSERT_EQ(a.token_ids.size(), 4u);  // 3 ordinary tokens, then EOS at length 13
  EXPECT_EQ(a.token_ids, s.fake->expected(prompt, 8));
  EXPECT_EQ(a.token_ids.back(), s.engine->tokenizer().eos_id());
  const JobOutcome& b = ignores->wait();
  EXPECT_EQ(b.status, JobStatus::kLength);
  EXPECT_EQ(b.token_ids.size(), 6u);
  EXPECT_EQ(b.token_ids[3], s.engine->tokenizer().eos_id());
  const JobOutcome& c = short_one->wait();
  EXPECT_EQ(c.status, JobStatus::kLength);
  EXPECT_EQ(c.token_ids.size(), 2u);
}

TEST(EngineFakeModel, PrefixCacheSkipsTheSharedPromptWithoutChangingTokens) {
  Started s = start(small_config());
  const std::vector<int32_t> prompt = prompt_of(3, 21);
  const JobOutcome first = submit(*s.engine, job_of(prompt, 5))->wait();
  const int64_t tokens_before = s.fake->tokens.load();
  const JobOutcome second = submit(*s.engine, job_of(prompt, 5))->wait();
  EXPECT_EQ(first.token_ids, s.fake->expected(prompt, 5));
  EXPECT_EQ(second.token_ids, first.token_ids);
  EXPECT_EQ(first.cached_prompt_tokens, 0);
  EXPECT_EQ(second.cached_prompt_tokens, 20);  // 5 full blocks of 4
  // The second computes the last prompt token and 4 decode tokens only.
  EXPECT_EQ(s.fake->tokens.load() - tokens_before, 1 + 4);
}

TEST(EngineFakeModel, AnImageSharedByTwoRequestsIsEncodedOnceAndChangesTheAnswer) {
  Started s = start(small_config());
  const std::vector<int32_t> prompt = prompt_of(4, 9);
  ASSERT_NE(s.fake->expected(prompt, 8, 5.0), s.fake->expected(prompt, 8, 6.0));
  auto a = submit(*s.engine, job_with_image(prompt, 8, image_of(11, 5.f)));
  auto b = submit(*s.engine, job_with_image(prompt, 8, image_of(11, 5.f)));
  EXPECT_EQ(a->wait().token_ids, s.fake->expected(prompt, 8, 5.0));
  EXPECT_EQ(b->wait().token_ids, s.fake->expected(prompt, 8, 5.0));
  EXPECT_EQ(s.fake->images_encoded.load(), 1);
  auto other = submit(*s.engine, job_with_image(prompt, 8, image_of(12, 6.f)));
  EXPECT_EQ(other->wait().token_ids, s.fake->expected(prompt, 8, 6.0));
  EXPECT_EQ(s.fake->images_encoded.load(), 2);
  EXPECT_EQ(stats_after_idle(*s.engine).image_cache_referenced_bytes, 0);
}

TEST(EngineFakeModel, AnImageThatFailsToEncodeFailsOnlyItsRequest) {
  Started s = start(small_config(), [](FakeEngineModel& f) { f.failing_image = 9.0; });
  const std::vector<int32_t> prompt = prompt_of(5, 9);
  auto bad = submit(*s.engine, job_with_image(prompt, 4, image_of(21, 9.f)));
  auto good = submit(*s.engine, job_with_image(prompt, 4, image_of(22, 5.f)));
  const JobOutcome& b = bad->wait();
  EXPECT_EQ(b.status, JobStatus::kFailed);
  EXPECT_NE(b.message.find("could not be encoded"), std::string::npos) << b.message;
  const JobOutcome& g = good->wait();
  EXPECT_EQ(g.status, JobStatus::kLength) << g.message;
  EXPECT_EQ(g.token_ids, s.fake->expected(prompt, 4, 5.0));
  EXPECT_EQ(kv_blocks_used_after_idle(*s.engine), 0);
}

TEST(EngineFakeModel, AFailedForwardFailsItsJobsAndLaterOnesRun) {
  Started s = start(small_config(), [](FakeEngineModel& f) {
    f.before = [](int64_t n) {
      if (n == 2) throw std::runtime_error("injected");
    };
  });
  const JobOutcome failed = submit(*s.engine, job_of(prompt_of(6, 5), 6))->wait();
  EXPECT_EQ(failed.status, JobStatus::kFailed);
  EXPECT_NE(failed.message.find("injected"), std::string::npos) << failed.message;
  const JobOutcome later = submit(*s.engine, job_of(prompt_of(7, 5), 6))->wait();
  EXPECT_EQ(later.status, JobStatus::kLength) << later.message;
  EXPECT_EQ(later.token_ids, s.fake->expected(prompt_of(7, 5), 6));
  EXPECT_EQ(kv_blocks_used_after_idle(*s.engine), 0);
}

// Signals the first delta, so the test can cancel a running job.
class FirstDeltaSink : public CollectingSink {
 public:
  void on_delta(JobDelta d) override {
    CollectingSink::on_delta(std::move(d));
    std::lock_guard lock(mu_);
    got_ = true;
    cv_.notify_all();
  }
  void wait_first() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [this] { return got_; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool got_ = false;
};

TEST(EngineFakeModel, CancelEndsARunningJobAndItsTokensSoFarAreRight) {
  Started s = start(small_config(), [](FakeEngineModel& f) {
    f.before = [](int64_t) { std::this_thread::sleep_for(std::chrono::milliseconds(2)); };
  });
  const std::vector<int32_t> prompt = prompt_of(8, 6);
  auto sink = std::make_shared<FirstDeltaSink>();
  const AdmissionResult r = s.engine->submit(job_of(prompt, 200), sink);
  ASSERT_EQ(r.code, Admission::kAccepted);
  sink->wait_first();
  s.engine->cancel(r.id);
  const JobOutcome& o = sink->wait();
  EXPECT_EQ(o.status, JobStatus::kCancelled);
  ASSERT_LT(o.token_ids.size(), 200u);
  const std::vector<int32_t> all = s.fake->expected(prompt, 200);
  EXPECT_EQ(o.token_ids, std::vector<int32_t>(all.begin(), all.begin() + o.token_ids.size()));
  EXPECT_EQ(kv_blocks_used_after_idle(*s.engine), 0);
}

// Counts the forwards in which a stream got a token.
class StepCountingSink : public CollectingSink {
 public:
  explicit StepCountingSink(const FakeEngineModel& fake) : fake_(fake) {}
  void on_delta(JobDelta d) override {
    CollectingSink::on_delta(std::move(d));
    forwards.push_back(fake_.forwards.load());  // engine thread: no race with forward()
  }
  std::vector<int64_t> forwards;

 private:
  const FakeEngineModel& fake_;
};

TEST(EngineFakeModel, ScoreComputesLogprobsInStepsBesideARunningStream) {
  Started s = start(small_config());
  // A stream first, then a Score whose 120-token prompt takes several steps of 16 tokens.
  auto stream = std::make_shared<StepCountingSink>(*s.fake);
  ASSERT_EQ(s.engine->submit(job_of(prompt_of(9, 4), 40), stream).code, Admission::kAccepted);
  const std::vector<int32_t> prompt = prompt_of(10, 120);
  ScoreJob job;
  job.sequences.push_back(prompt);
  const std::vector<std::vector<int32_t>> candidates = {{300, 301, 302}, {400, 401}};
  for (const auto& cand : candidates) {
    std::vector<int32_t> seq = prompt;
    seq.insert(seq.end(), cand.begin(), cand.end());
    job.sequences.push_back(seq);
    job.first_new.push_back(static_cast<int32_t>(prompt.size()));
  }
  for (const auto& seq : job.sequences) job.image_of_token.emplace_back(seq.size(), -1);
  std::mutex mu;
  std::condition_variable cv;
  std::optional<ScoreOutcome> outcome;
  int64_t score_done_at = 0;
  const AdmissionResult r = s.engine->submit_score(std::move(job), [&](ScoreOutcome o) {
    std::lock_guard lock(mu);
    score_done_at = s.fake->forwards.load();
    outcome = std::move(o);
    cv.notify_all();
  });
  ASSERT_EQ(r.code, Admission::kAccepted) << r.message;
  {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return outcome.has_value(); });
  }
  ASSERT_EQ(outcome->status, JobStatus::kStop) << outcome->message;
  ASSERT_EQ(outcome->logprobs.size(), candidates.size());
  for (size_t c = 0; c < candidates.size(); ++c) {
    double want = 0;
    std::vector<int32_t> history = prompt;
    for (int32_t t : candidates[c]) {
      want += s.fake->logprob(history, t, FakeEngineModel::kNoImage);
      history.push_back(t);
    }
    EXPECT_NEAR(outcome->logprobs[c], want, 1e-4) << "candidate " << c;
  }
  EXPECT_GE(outcome->steps, 120 / 16) << "the Score prompt was not chunked";
  const JobOutcome& o = stream->wait();
  EXPECT_EQ(o.token_ids, s.fake->expected(prompt_of(9, 4), 40));
  // The stream got tokens in the steps that computed the Score (it was not stalled).
  const auto during = std::count_if(stream->forwards.begin(), stream->forwards.end(),
                                    [&](int64_t f) { return f < score_done_at; });
  EXPECT_GE(during, outcome->steps - 1);
}

}  // namespace
}  // namespace flamingo
