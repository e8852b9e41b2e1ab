// The engine against the reference generator (tests/common/reference_generation.h) on the golden
// tiny checkpoint: a request's tokens are identical whether it runs alone through generate() or
// among others in the continuous batch (fp32, greedy and seeded sampling), plus
// cancellation, deadlines, admission limits and draining.
#include "server/engine/engine.h"

#include <gtest/gtest.h>

#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>

#include "model/image_decode.h"
#include "model/image_preprocess.h"
#include "model/pipeline.h"
#include "model/prompt.h"
#include "server/engine/media_cache.h"
#include "tests/common/engine_jobs.h"
#include "tests/common/reference_generation.h"

namespace flamingo {
namespace {

using testing::EngineCase;
using testing::file_bytes;
using testing::golden_job;
using testing::JobCollector;
using testing::kGoldenImages;
using testing::kGoldenModel;
using testing::pipeline_input;
using testing::PipelineInput;

// The engine publishes its stats after a step's outcomes reach their sinks: waits (up to 1 s)
// for every KV block to be free again, returns the blocks still used.
int32_t kv_blocks_used_after_idle(const Engine& engine) {
  for (int i = 0; i < 100 && engine.stats().kv_blocks_used != 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return engine.stats().kv_blocks_used;
}

class EngineTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    EngineConfig c;
    c.model_dir = kGoldenModel;
    c.dtype = "float32";
    c.limits.max_running_requests = 8;
    c.limits.max_queued_requests = 64;
    c.token_budget = 64;  // forces chunked prefill and mixed steps
    c.block_size = 4;
    engine_ = Engine::start(c).release();
    PipelineOptions po;
    po.model.dtype = "float32";
    pipeline_ = Pipeline::load(kGoldenModel, po).release();
  }
  static void TearDownTestSuite() {
    delete engine_;
    delete pipeline_;
  }

  GenerateJob make_job(const EngineCase& k) const { return golden_job(*engine_, k); }

  GenerationResult solo(const EngineCase& k) const {
    const PipelineInput in = pipeline_input(k);
    GenerationOptions o = with_defaults(pipeline_->generation_defaults());
    o.max_new_tokens = k.max_new_tokens;
    o.sampling = k.sampling;
    return generate(*pipeline_, prepare(*pipeline_, in.items, in.images), o);
  }

  static Engine* engine_;
  static Pipeline* pipeline_;
};
Engine* EngineTest::engine_ = nullptr;
Pipeline* EngineTest::pipeline_ = nullptr;

std::vector<EngineCase> mixed_cases() {
  std::vector<EngineCase> cases;
  const std::vector<std::vector<std::string>> image_sets = {
      {},
      {"cat_face_28x28.png"},
      {"chair_baseline_100x80.jpg", "leaf_42x42.png"},
      {"cat_face_28x28.png", "fish_progressive_84x63.jpg", "mug_P_60x60.png"}};
  const std::vector<std::string> texts = {"A photo of", "Question: what is this? Answer:",
                                          "In this picture we can see a long and winding"};
  for (int i = 0; i < 12; ++i) {
    EngineCase k;
    k.text = texts[i % texts.size()] + std::string(i % 4, '!');
    k.images = image_sets[i % image_sets.size()];
    k.max_new_tokens = 3 + (i * 5) % 11;
    if (i % 3 == 1) k.sampling = SamplingParams{0.8f, 20, 0.9f, 1.1f, 1000u + i};
    cases.push_back(k);
  }
  return cases;
}

TEST_F(EngineTest, ConcurrentJobsMatchSoloGeneration) {
  const std::vector<EngineCase> cases = mixed_cases();
  std::vector<std::shared_ptr<JobCollector>> sinks;
  for (const EngineCase& k : cases) {
    auto sink = std::make_shared<JobCollector>();
    AdmissionResult r = engine_->submit(make_job(k), sink);
    ASSERT_EQ(r.code, Admission::kAccepted) << r.message;
    sinks.push_back(sink);
  }
  for (size_t i = 0; i < cases.size(); ++i) {
    sinks[i]->wait();
    const GenerationResult want = solo(cases[i]);
    EXPECT_EQ(sinks[i]->tokens, want.token_ids) << "case " << i;
    EXPECT_EQ(sinks[i]->outcome.token_ids, want.token_ids) << "case " << i;
    EXPECT_EQ(sinks[i]->outcome.text, want.text) << "case " << i;
    EXPECT_EQ(sinks[i]->streamed_text, want.text) << "case " << i;
    ASSERT_EQ(sinks[i]->logprobs.size(), want.logprobs.size());
    for (size_t t = 0; t < want.logprobs.size(); ++t) {
      EXPECT_NEAR(sinks[i]->logprobs[t], want.logprobs[t], 1e-4) << "case " << i << " token " << t;
    }
    const JobStatus status = want.finish_reason == "stop" ? JobStatus::kStop : JobStatus::kLength;
    EXPECT_EQ(sinks[i]->outcome.status, status) << "case " << i;
    EXPECT_EQ(sinks[i]->outcome.images, static_cast<int32_t>(cases[i].images.size()));
  }
  const EngineStats s = engine_->stats();
  EXPECT_EQ(s.running, 0);
  EXPECT_EQ(s.kv_blocks_used, 0);
}

TEST_F(EngineTest, CancelEndsJobAndFreesBlocks) {
  EngineCase k{"A long story:", {"cat_face_28x28.png"}, 200, {}};
  GenerateJob job = make_job(k);
  job.sampling.temperature = 1.0f;  // keeps going; no early stop on greedy EOS
  job.sampling.seed = 7;
  job.ignore_eos = true;
  auto sink = std::make_shared<JobCollector>();
  AdmissionResult r = engine_->submit(std::move(job), sink);
  ASSERT_EQ(r.code, Admission::kAccepted);
  while (engine_->stats().running == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  engine_->cancel(r.id);
  sink->wait();
  EXPECT_EQ(sink->outcome.status, JobStatus::kCancelled);
  EXPECT_LT(sink->outcome.completion_tokens, 200);
  EXPECT_EQ(kv_blocks_used_after_idle(*engine_), 0);
}

// The deadline is a quarter of the time the same job takes without one (measured first), so
// that the job outlasts it however fast this machine is.
TEST_F(EngineTest, DeadlineEndsJob) {
  EngineCase k{"Once upon a time", {}, 400, {}};
  auto run = [&](std::optional<Clock::time_point> deadline) {
    GenerateJob job = make_job(k);
    job.ignore_eos = true;
    if (deadline) job.deadline = *deadline;
    auto sink = std::make_shared<JobCollector>();
    EXPECT_EQ(engine_->submit(std::move(job), sink).code, Admission::kAccepted);
    sink->wait();
    return sink;
  };
  const auto t0 = Clock::now();
  const auto full = run(std::nullopt);
  const auto took = Clock::now() - t0;
  ASSERT_EQ(full->outcome.status, JobStatus::kLength);
  const auto cut = run(Clock::now() + took / 4);
  EXPECT_EQ(cut->outcome.status, JobStatus::kDeadline);
  EXPECT_LT(cut->tokens.size(), full->tokens.size());
}

TEST_F(EngineTest, RejectsJobLargerThanTheCache) {
  EngineCase k{"hi", {}, 1, {}};
  GenerateJob job = make_job(k);
  const int64_t slots =
      engine_->description().kv_blocks_total * engine_->description().kv_block_size;
  job.max_new_tokens = static_cast<int32_t>(slots) + 1;
  AdmissionResult r = engine_->submit(std::move(job), std::make_shared<JobCollector>());
  EXPECT_EQ(r.code, Admission::kTooLarge);
  EXPECT_NE(r.message.find(std::to_string(slots)), std::string::npos) << r.message;
}

// A step that throws (here: an image with the wrong number of pixel values, which the
// request builder would never hand over) fails the jobs of that moment with the engine's
// message, and the engine goes on serving the next job.
TEST_F(EngineTest, AFailedStepFailsItsJobsAndTheEngineGoesOn) {
  GenerateJob bad = make_job(EngineCase{"A photo of", {"cat_face_28x28.png"}, 3, {}});
  bad.images[0].pixels.resize(7);
  bad.images[0].key ^= 0x5a5a;  // not the cached cat
  auto bad_sink = std::make_shared<JobCollector>();
  ASSERT_EQ(engine_->submit(std::move(bad), bad_sink).code, Admission::kAccepted);
  bad_sink->wait();
  EXPECT_EQ(bad_sink->outcome.status, JobStatus::kFailed);
  EXPECT_NE(bad_sink->outcome.message.find("image has 7 values"), std::string::npos)
      << bad_sink->outcome.message;

  const EngineCase k{"A photo of", {"leaf_42x42.png"}, 4, {}};
  auto sink = std::make_shared<JobCollector>();
  ASSERT_EQ(engine_->submit(make_job(k), sink).code, Admission::kAccepted);
  sink->wait();
  EXPECT_EQ(sink->outcome.status, JobStatus::kLength) << sink->outcome.message;
  EXPECT_EQ(sink->tokens, solo(k).token_ids);
}

// Fault isolation: an image that cannot be encoded, in the same step as another job's image,
// fails only its own job; the other job's tokens are its solo tokens.
TEST_F(EngineTest, AnImageThatCannotBeEncodedFailsOnlyItsJob) {
  const EngineCase good{"Question: what is this? Answer:", {"mug_P_60x60.png"}, 8, {}};
  GenerateJob bad = make_job(EngineCase{"A photo of", {"lamp_rgba_50x41.png"}, 3, {}});
  bad.images[0].pixels.resize(11);
  bad.images[0].key ^= 0x77;  // not the cached lamp
  auto good_sink = std::make_shared<JobCollector>();
  auto bad_sink = std::make_shared<JobCollector>();
  ASSERT_EQ(engine_->submit(make_job(good), good_sink).code, Admission::kAccepted);
  ASSERT_EQ(engine_->submit(std::move(bad), bad_sink).code, Admission::kAccepted);
  bad_sink->wait();
  good_sink->wait();
  EXPECT_EQ(bad_sink->outcome.status, JobStatus::kFailed);
  EXPECT_NE(bad_sink->outcome.message.find("could not be encoded"), std::string::npos)
      << bad_sink->outcome.message;
  EXPECT_NE(bad_sink->outcome.message.find("image has 11 values"), std::string::npos)
      << bad_sink->outcome.message;
  EXPECT_EQ(good_sink->outcome.status, JobStatus::kLength) << good_sink->outcome.message;
  EXPECT_EQ(good_sink->tokens, solo(good).token_ids);
  EXPECT_EQ(kv_blocks_used_after_idle(*engine_), 0);
}

// Fault isolation: a forward pass that throws (here std::bad_alloc through the test hook, as
// running out of memory would) fails the jobs in that step only. A job still queued behind
// them (one running request at a time) runs afterwards and gives its solo tokens.
TEST_F(EngineTest, AFailedForwardFailsOnlyThatStepsJobs) {
  EngineConfig c;
  c.model_dir = kGoldenModel;
  c.dtype = "float32";
  c.limits.max_running_requests = 1;
  c.warm_up = false;
  c.before_forward = [calls = std::make_shared<int>(0)](int64_t) {
    if (++*calls == 3) throw std::bad_alloc();  // once: the third forward pass
  };
  const std::unique_ptr<Engine> engine = Engine::start(c);
  const EngineCase first{"A photo of", {"cat_face_28x28.png"}, 10, {}};
  const EngineCase queued{"In this picture we can see", {"leaf_42x42.png"}, 5, {}};
  auto first_sink = std::make_shared<JobCollector>();
  auto queued_sink = std::make_shared<JobCollector>();
  ASSERT_EQ(engine->submit(golden_job(*engine, first), first_sink).code, Admission::kAccepted);
  ASSERT_EQ(engine->submit(golden_job(*engine, queued), queued_sink).code, Admission::kAccepted);
  first_sink->wait();
  queued_sink->wait();
  EXPECT_EQ(first_sink->outcome.status, JobStatus::kFailed);
  EXPECT_NE(first_sink->outcome.message.find("engine error"), std::string::npos)
      << first_sink->outcome.message;
  EXPECT_EQ(first_sink->tokens.size(), 2u);  // steps 1 and 2 gave a token each
  EXPECT_EQ(queued_sink->outcome.status, JobStatus::kLength) << queued_sink->outcome.message;
  EXPECT_EQ(queued_sink->tokens, solo(queued).token_ids);
  EXPECT_EQ(kv_blocks_used_after_idle(*engine), 0);
}

TEST(EngineDrainTest, DrainFinishesAcceptedJobsAndRefusesNewOnes) {
  EngineConfig c;
  c.model_dir = kGoldenModel;
  c.dtype = "float32";
  std::unique_ptr<Engine> engine = Engine::start(c);
  std::vector<std::shared_ptr<JobCollector>> sinks;
  for (int i = 0; i < 4; ++i) {
    GenerateJob job;
    TokenizedPrompt t = build_idefics_prompt(engine->tokenizer(), {PromptItem::make_text("Hello")});
    job.prompt = t.token_ids;
    job.image_of_token = t.image_of_token;
    job.max_new_tokens = 5;
    job.ignore_eos = true;
    auto sink = std::make_shared<JobCollector>();
    ASSERT_EQ(engine->submit(std::move(job), sink).code, Admission::kAccepted);
    sinks.push_back(sink);
  }
  std::thread drainer([&] { EXPECT_TRUE(engine->drain(60)); });
  drainer.join();
  for (auto& s : sinks) {
    s->wait();
    EXPECT_EQ(s->outcome.status, JobStatus::kLength);
    EXPECT_EQ(s->outcome.completion_tokens, 5);
  }
  GenerateJob late;
  late.prompt = {1, 2};
  late.image_of_token = {-1, -1};
  late.max_new_tokens = 1;
  EXPECT_EQ(engine->submit(std::move(late), std::make_shared<JobCollector>()).code,
            Admission::kShuttingDown);
}

// bf16 compute: a request's greedy tokens in the batch equal its solo bf16 tokens wherever the
// fp32 top-1/top-2 margin exceeds 0.5 (issue 3); compared up to the first step where that
// margin is smaller or where solo bf16 itself leaves the fp32 path.
TEST(EngineBf16Test, BatchedMatchesSoloWhereFp32MarginIsLarge) {
  EngineConfig c;
  c.model_dir = kGoldenModel;
  c.dtype = "bfloat16";
  c.token_budget = 64;
  c.block_size = 4;
  std::unique_ptr<Engine> engine = Engine::start(c);
  PipelineOptions p32, p16;
  p32.model.dtype = "float32";
  p16.model.dtype = "bfloat16";
  const std::unique_ptr<Pipeline> fp32 = Pipeline::load(kGoldenModel, p32);
  const std::unique_ptr<Pipeline> bf16 = Pipeline::load(kGoldenModel, p16);

  std::vector<EngineCase> cases;
  for (const EngineCase& k : mixed_cases()) {
    if (k.sampling.temperature == 0) cases.push_back(k);
  }
  std::vector<std::shared_ptr<JobCollector>> sinks;
  for (const EngineCase& k : cases) {
    GenerateJob job = golden_job(*engine, k);
    auto sink = std::make_shared<JobCollector>();
    ASSERT_EQ(engine->submit(std::move(job), sink).code, Admission::kAccepted);
    sinks.push_back(sink);
  }
  int compared = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    sinks[i]->wait();
    const PipelineInput in = pipeline_input(cases[i]);
    GenerationOptions o = with_defaults(fp32->generation_defaults());
    o.max_new_tokens = cases[i].max_new_tokens;
    o.top_logprobs = 2;
    const GenerationResult ref = generate(*fp32, prepare(*fp32, in.items, in.images), o);
    const GenerationResult solo = generate(*bf16, prepare(*bf16, in.items, in.images), o);
    for (size_t t = 0; t < solo.token_ids.size() && t < ref.token_ids.size(); ++t) {
      const double margin = ref.top_logprobs[t][0].second - ref.top_logprobs[t][1].second;
      if (margin <= 0.5 || solo.token_ids[t] != ref.token_ids[t]) break;
      ASSERT_LT(t, sinks[i]->tokens.size()) << "case " << i;
      EXPECT_EQ(sinks[i]->tokens[t], solo.token_ids[t]) << "case " << i << " token " << t;
      ++compared;
    }
  }
  EXPECT_GT(compared, 0) << "no token had an fp32 margin above 0.5: the test compared nothing";
}

}  // namespace
}  // namespace flamingo
