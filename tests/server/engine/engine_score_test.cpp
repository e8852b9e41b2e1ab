// Score jobs in the engine (server/engine/engine_score.cpp) on the golden tiny checkpoint:
// candidate and prompt logprobs equal the reference generator's; a large Score runs interleaved
// with a stream's decode steps (checked by the order of events, not by times) and costs about
// prompt + candidates in steps, not candidates x prompt; a repeated prompt comes from the
// prefix cache; deadline and cancel end a Score and free its KV blocks.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>

#include "model/error.h"
#include "model/pipeline.h"
#include "server/engine/engine.h"
#include "tests/common/engine_jobs.h"
#include "tests/common/reference_generation.h"

namespace flamingo {
namespace {

using testing::file_bytes;
using testing::JobCollector;
using testing::kGoldenImages;
using testing::kGoldenModel;

constexpr int32_t kTokenBudget = 64;
constexpr int32_t kBlockSize = 4;

// The engine's events in the order they happened, across threads.
std::atomic<int> g_clock{0};

// A stream that notes the event number of each of its deltas.
class TimedStream : public JobCollector {
 public:
  void on_delta(JobDelta d) override {
    events.push_back(g_clock++);
    JobCollector::on_delta(std::move(d));
  }
  std::vector<int> events;  // written on the engine thread; read after the score ended
};

// Waits for a Score's outcome and notes its event number.
struct ScoreWaiter {
  std::mutex mu;
  std::condition_variable cv;
  std::optional<ScoreOutcome> outcome;
  int event = -1;

  ScoreCallback callback() {
    return [this](ScoreOutcome o) {
      std::lock_guard lock(mu);
      event = g_clock++;
      outcome = std::move(o);
      cv.notify_all();
    };
  }
  const ScoreOutcome& wait() {
    std::unique_lock lock(mu);
    EXPECT_TRUE(cv.wait_for(lock, std::chrono::seconds(120), [&] { return outcome.has_value(); }));
    return *outcome;
  }
};

// The ScoreJob the server builds: prompt = images then `text`; candidate c appended to the
// last text, first_new = its first token beyond the common prefix with the prompt.
ScoreJob score_job(const Engine& engine, const std::vector<std::string>& images,
                   const std::string& text, const std::vector<std::string>& candidates) {
  ScoreJob job;
  std::vector<PromptItem> items;
  const ImagePreprocessConfig& ic = engine.image_config();
  for (const std::string& name : images) {
    items.push_back(PromptItem::make_image());
    const std::vector<uint8_t> bytes = file_bytes(kGoldenImages + name);
    job.images.push_back({media_key(bytes, ic.image_size, ic.mean, ic.std),
                          preprocess_image(read_image_file(kGoldenImages + name, {}), ic)});
  }
  items.push_back(PromptItem::make_text(text));
  const TokenizedPrompt base = build_idefics_prompt(engine.tokenizer(), items);
  job.sequences.push_back(base.token_ids);
  job.image_of_token.push_back(base.image_of_token);
  for (const std::string& c : candidates) {
    std::vector<PromptItem> with = items;
    with.back().text += c;
    const TokenizedPrompt t = build_idefics_prompt(engine.tokenizer(), with);
    size_t common = 0;
    while (common < base.token_ids.size() && t.token_ids[common] == base.token_ids[common]) {
      ++common;
    }
    job.first_new.push_back(static_cast<int32_t>(std::max<size_t>(common, 1)));
    job.sequences.push_back(t.token_ids);
    job.image_of_token.push_back(t.image_of_token);
  }
  return job;
}

std::string long_text() {
  std::string s;
  for (int i = 0; i < 40; ++i) s += "The cat sat on the mat and looked at the window. ";
  return s + "In the end, the cat was";
}

const std::vector<std::string> kCandidates = {" happy",  " asleep on the sofa", " gone", " a dog",
                                              " hungry", " very, very tired",   " here", " blue"};

class EngineScoreTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    EngineConfig c;
    c.model_dir = kGoldenModel;
    c.dtype = "float32";
    c.limits.max_running_requests = 10;
    c.token_budget = kTokenBudget;  // a long Score takes many steps
    c.block_size = kBlockSize;
    engine_ = Engine::start(c).release();
  }
  static void TearDownTestSuite() { delete engine_; }

  static void wait_for_free_blocks() {
    for (int i = 0; i < 200 && engine_->stats().kv_blocks_used != 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    EXPECT_EQ(engine_->stats().kv_blocks_used, 0);
  }

  static Engine* engine_;
};
Engine* EngineScoreTest::engine_ = nullptr;

// The reference: every sequence of the job (the prompt, the prompt with each candidate)
// through the reference generator's prompt_logprobs in one flattened forward; a candidate's
// logprob sums its own tokens' entries. The engine computes them in chunks through the
// prefix cache: the fp32 batch-invariance bar.
TEST_F(EngineScoreTest, MatchesTheReferenceScore) {
  const std::vector<std::string> candidates = {" a cat", " a dog", " chair"};
  PipelineOptions po;
  po.model.dtype = "float32";
  const std::unique_ptr<Pipeline> pipeline = Pipeline::load(kGoldenModel, po);
  ScoreJob job = score_job(*engine_, {"cat_face_28x28.png"}, "This is", candidates);
  job.prompt_logprobs = true;
  const PreparedPrompt base =
      prepare(*pipeline, {PromptItem::make_image(), PromptItem::make_text("This is")},
              {read_image_file(kGoldenImages + "cat_face_28x28.png", {})});
  ASSERT_EQ(base.ids, job.sequences[0]);
  const std::vector<std::vector<double>> lp = batch_prompt_logprobs(
      pipeline->model(), job.sequences, job.image_of_token, base.images, kBlockSize);
  ScoreWaiter w;
  const AdmissionResult r = engine_->submit_score(ScoreJob(job), w.callback());
  ASSERT_EQ(r.code, Admission::kAccepted);
  const ScoreOutcome& got = w.wait();
  ASSERT_EQ(got.status, JobStatus::kStop) << got.message;
  ASSERT_EQ(got.logprobs.size(), candidates.size());
  for (size_t c = 0; c < candidates.size(); ++c) {
    double want = 0;
    for (size_t i = job.first_new[c]; i < job.sequences[c + 1].size(); ++i) want += lp[c + 1][i];
    EXPECT_NEAR(got.logprobs[c], want, 1e-4) << candidates[c];
  }
  ASSERT_EQ(got.prompt_logprobs.size(), job.sequences[0].size());
  EXPECT_TRUE(std::isnan(got.prompt_logprobs[0]));
  for (size_t i = 1; i < lp[0].size(); ++i) EXPECT_NEAR(got.prompt_logprobs[i], lp[0][i], 1e-4);
  wait_for_free_blocks();
}

// A stream decodes while an 8-candidate Score of a ~775-token prompt runs: every step the
// Score takes part in also decodes the stream, so the stream's deltas between the Score's
// submission and its end are at least its steps (the old engine ran a Score in one piece
// between two steps: none). The Score computes the prompt once plus each candidate's own
// tokens (and the prompt's last partial block), not candidates x prompt. The same Score again
// finds its prompt cached and computes only the candidates' parts.
TEST_F(EngineScoreTest, LargeScoreInterleavesWithAStreamAndComputesThePromptOnce) {
  testing::EngineCase k{"Tell me a story:", {}, 1000, {}};
  GenerateJob stream_job = testing::golden_job(*engine_, k);
  stream_job.ignore_eos = true;
  auto stream = std::make_shared<TimedStream>();
  const AdmissionResult sr = engine_->submit(std::move(stream_job), stream);
  ASSERT_EQ(sr.code, Admission::kAccepted);
  while (g_clock.load() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));

  ScoreJob job = score_job(*engine_, {"cat_face_28x28.png"}, long_text(), kCandidates);
  const auto prompt = static_cast<int64_t>(job.sequences[0].size());
  ASSERT_GT(prompt, 400);
  int64_t own_tokens = 0;  // what each candidate computes beyond the cached prompt, at most
  for (size_t c = 0; c < kCandidates.size(); ++c) {
    own_tokens += static_cast<int64_t>(job.sequences[c + 1].size()) - job.first_new[c] + kBlockSize;
  }
  const ScoreJob again = job;
  ScoreWaiter w;
  const int submitted = g_clock++;
  ASSERT_EQ(engine_->submit_score(std::move(job), w.callback()).code, Admission::kAccepted);
  const ScoreOutcome& got = w.wait();
  ASSERT_EQ(got.status, JobStatus::kStop) << got.message;
  ScoreWaiter w2;
  ASSERT_EQ(engine_->submit_score(ScoreJob(again), w2.callback()).code, Admission::kAccepted);
  const ScoreOutcome& got2 = w2.wait();
  engine_->cancel(sr.id);
  stream->wait();
  EXPECT_EQ(stream->outcome.status, JobStatus::kCancelled);

  int during = 0;
  for (int e : stream->events) during += e > submitted && e < w.event;
  EXPECT_GE(during, got.steps) << "stream deltas while the Score ran";
  EXPECT_GE(got.computed_tokens, prompt);
  EXPECT_LE(got.computed_tokens, prompt + own_tokens);
  // Each step decodes the stream: kTokenBudget - 1 tokens left for the Score.
  const int64_t per_step = kTokenBudget - 1;
  EXPECT_LE(got.steps, (got.computed_tokens + per_step - 1) / per_step + 2);
  EXPECT_GE(got.steps, prompt / per_step);

  ASSERT_EQ(got2.status, JobStatus::kStop) << got2.message;
  EXPECT_LE(got2.computed_tokens, own_tokens);
  ASSERT_EQ(got2.logprobs.size(), got.logprobs.size());
  for (size_t c = 0; c < got.logprobs.size(); ++c) {
    EXPECT_NEAR(got2.logprobs[c], got.logprobs[c], 1e-4) << kCandidates[c];
  }
  wait_for_free_blocks();
}

TEST_F(EngineScoreTest, DeadlineAndCancelEndAScoreAndFreeItsBlocks) {
  ScoreJob late = score_job(*engine_, {}, long_text(), kCandidates);
  late.deadline = Clock::now();
  ScoreWaiter w1;
  ASSERT_EQ(engine_->submit_score(std::move(late), w1.callback()).code, Admission::kAccepted);
  EXPECT_EQ(w1.wait().status, JobStatus::kDeadline);
  EXPECT_TRUE(w1.wait().logprobs.empty());

  // ~10 steps of work; the cancel reaches the engine within one.
  ScoreWaiter w2;
  const AdmissionResult r = engine_->submit_score(
      score_job(*engine_, {"leaf_42x42.png"}, long_text() + " and", kCandidates), w2.callback());
  ASSERT_EQ(r.code, Admission::kAccepted);
  engine_->cancel(r.id);
  EXPECT_EQ(w2.wait().status, JobStatus::kCancelled);
  wait_for_free_blocks();
  EXPECT_EQ(engine_->stats().running + engine_->stats().queued, 0);
}

TEST_F(EngineScoreTest, MalformedJobsThrowAndTooLongOnesAreRefused) {
  ScoreJob job = score_job(*engine_, {}, "Answer:", {" yes"});
  ScoreJob bad = job;
  bad.first_new[0] = static_cast<int32_t>(bad.sequences[1].size());
  EXPECT_THROW(engine_->submit_score(std::move(bad), [](ScoreOutcome) {}), Error);
  bad = job;
  bad.sequences.pop_back();
  EXPECT_THROW(engine_->submit_score(std::move(bad), [](ScoreOutcome) {}), Error);

  const int64_t slots =
      engine_->description().kv_blocks_total * engine_->description().kv_block_size;
  ScoreJob huge = job;
  huge.sequences[1].assign(static_cast<size_t>(slots) + 1, huge.sequences[1].back());
  huge.image_of_token[1].assign(huge.sequences[1].size(), -1);
  const AdmissionResult r = engine_->submit_score(std::move(huge), [](ScoreOutcome) {});
  EXPECT_EQ(r.code, Admission::kTooLarge);
  EXPECT_NE(r.message.find(std::to_string(slots + 1) + " KV slots"), std::string::npos)
      << r.message;
}

}  // namespace
}  // namespace flamingo
