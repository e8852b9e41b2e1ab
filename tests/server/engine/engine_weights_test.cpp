// Batch invariance of the engine in every weight type (issue 8): on the golden tiny checkpoint
// with --weights bfloat16 / int8 (and float32), in float32 and bfloat16 compute, 16 greedy
// requests run concurrently give exactly the token ids and the same logprob bits as each
// request run alone through the same engine, and as the single-sequence generator
// (tests/common/reference_generation.h) - with steps of more than 32 token rows in which prefill
// chunks and decodes are mixed.
#include <gtest/gtest.h>

#include <bit>
#include <iomanip>
#include <thread>

#include "model/pipeline.h"
#include "model/prompt.h"
#include "model/tokenizer.h"
#include "server/engine/engine.h"
#include "tests/common/engine_jobs.h"
#include "tests/common/reference_generation.h"

namespace flamingo {
namespace {

using testing::EngineCase;
using testing::golden_job;
using testing::JobCollector;
using testing::kGoldenModel;
using testing::pipeline_input;
using testing::PipelineInput;

// 16 greedy requests, 0-2 images, 5-8 new tokens each; words are added to each prompt until
// it holds its target of 20-56 tokens (20 + 11 i mod 37), so prompts are 20-60 tokens long.
std::vector<EngineCase> cases(const Tokenizer& tokenizer) {
  const std::vector<std::string> words = {"a",    "photo", "of",   "the",  "cat",   "sitting",
                                          "on",   "green", "leaf", "near", "chair", "and",
                                          "blue", "mug",   "what", "is",   "this?", "Answer:"};
  const std::vector<std::vector<std::string>> image_sets = {
      {}, {"cat_face_28x28.png"}, {"chair_baseline_100x80.jpg", "leaf_42x42.png"}};
  std::vector<EngineCase> out;
  for (int i = 0; i < 16; ++i) {
    EngineCase k;
    k.images = image_sets[i % image_sets.size()];
    k.max_new_tokens = 5 + i % 4;
    const size_t target = 20 + (i * 11) % 37;
    for (int w = 0;; ++w) {
      k.text += (w ? " " : "") + words[(i * 5 + w * 3) % words.size()];
      std::vector<PromptItem> items(k.images.size(), PromptItem::make_image());
      items.push_back(PromptItem::make_text(k.text));
      if (build_idefics_prompt(tokenizer, items).token_ids.size() >= target) break;
    }
    out.push_back(k);
  }
  return out;
}

// Exact equality of two logprob lists, naming the first differing entry with all its digits.
void expect_same_bits(const std::vector<float>& got, const std::vector<float>& want,
                      const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t t = 0; t < want.size(); ++t) {
    if (std::bit_cast<uint32_t>(got[t]) != std::bit_cast<uint32_t>(want[t])) {
      ADD_FAILURE() << what << " token " << t << ": logprob " << std::setprecision(9) << got[t]
                    << " vs " << want[t] << " (" << (got[t] - want[t]) << ")";
      return;
    }
  }
}

struct Solo {
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
};

struct Param {
  std::string weights, dtype;
};
void PrintTo(const Param& p, std::ostream* os) { *os << p.weights << " weights, " << p.dtype; }

class EngineWeightsTest : public ::testing::TestWithParam<Param> {
 protected:
  static constexpr int32_t kBlockSize = 4;

  void SetUp() override {
    EngineConfig c;
    c.model_dir = kGoldenModel;
    c.dtype = GetParam().dtype;
    c.weights = GetParam().weights;
    c.limits.max_running_requests = 16;
    c.limits.max_queued_requests = 64;
    c.token_budget = 96;
    c.block_size = kBlockSize;
    // Every prompt token is computed (no prefix-cache hits), so the rows of a run are known.
    c.prefix_caching = false;
    engine_ = Engine::start(c);
  }

  GenerateJob make_job(const EngineCase& k, int32_t* prompt_tokens = nullptr) const {
    GenerateJob job = golden_job(*engine_, k);
    job.ignore_eos = true;  // exactly max_new_tokens each: the row count below is exact
    if (prompt_tokens != nullptr) *prompt_tokens = static_cast<int32_t>(job.prompt.size());
    return job;
  }

  // Waits until the engine thread has published the stats after its last step.
  EngineStats idle_stats() const {
    EngineStats s = engine_->stats();
    for (int i = 0; i < 1000 && (s.running != 0 || s.queued != 0); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      s = engine_->stats();
    }
    EXPECT_EQ(s.running, 0);
    EXPECT_EQ(s.queued, 0);
    EXPECT_EQ(s.kv_blocks_used, 0);
    return s;
  }

  std::unique_ptr<Engine> engine_;
};

TEST_P(EngineWeightsTest, ConcurrentGreedyEqualsSoloBitForBit) {
  EXPECT_EQ(engine_->description().weights, GetParam().weights);
  EXPECT_EQ(engine_->description().dtype, GetParam().dtype);
  const std::vector<EngineCase> ks = cases(engine_->tokenizer());

  // Each request alone through the same engine.
  std::vector<Solo> alone;
  for (const EngineCase& k : ks) {
    auto sink = std::make_shared<JobCollector>();
    ASSERT_EQ(engine_->submit(make_job(k), sink).code, Admission::kAccepted);
    sink->wait();
    ASSERT_EQ(sink->outcome.status, JobStatus::kLength);
    alone.push_back({sink->tokens, sink->logprobs});
  }
  // All of them at once. Jobs are built first so that they arrive together; should the engine
  // step before the last arrives (this thread descheduled on a busy machine) and no step reach
  // 33 rows, the run is repeated (up to 3 times): every run's bits are checked.
  int64_t rows = 0, steps = 0;
  for (int attempt = 0; attempt < 3 && (attempt == 0 || rows <= 32 * steps); ++attempt) {
    const int64_t steps_before = idle_stats().steps;
    std::vector<GenerateJob> jobs;
    rows = 0;
    for (const EngineCase& k : ks) {
      int32_t p = 0;
      jobs.push_back(make_job(k, &p));
      EXPECT_GE(p, 20);
      EXPECT_LE(p, 60);
      rows += p + k.max_new_tokens - 1;  // every prompt token, every generated token but the last
    }
    std::vector<std::shared_ptr<JobCollector>> sinks;
    for (GenerateJob& job : jobs) {
      auto sink = std::make_shared<JobCollector>();
      ASSERT_EQ(engine_->submit(std::move(job), sink).code, Admission::kAccepted);
      sinks.push_back(sink);
    }
    for (size_t i = 0; i < ks.size(); ++i) {
      sinks[i]->wait();
      EXPECT_EQ(sinks[i]->outcome.status, JobStatus::kLength) << "case " << i;
      ASSERT_EQ(sinks[i]->tokens.size(), static_cast<size_t>(ks[i].max_new_tokens)) << "case " << i;
      EXPECT_EQ(sinks[i]->tokens, alone[i].tokens) << "case " << i;
      expect_same_bits(sinks[i]->logprobs, alone[i].logprobs, "case " + std::to_string(i));
    }
    steps = idle_stats().steps - steps_before;
  }

  ASSERT_GT(steps, 0);
  RecordProperty("rows", std::to_string(rows));
  RecordProperty("steps", std::to_string(steps));
  EXPECT_GT(rows, 32 * steps) << rows << " rows in " << steps
                              << " steps: no step needed more than 32 rows";
}

// The engine's results equal the single-sequence generator's (tests/common/reference_generation.h:
// the whole prompt in one forward, then one token per step) with the same weights, dtype and block
// size.
TEST_P(EngineWeightsTest, EngineEqualsSingleSequenceGenerator) {
  PipelineOptions po;
  po.model.dtype = GetParam().dtype;
  po.model.weights = GetParam().weights;
  const std::unique_ptr<Pipeline> pipeline = Pipeline::load(kGoldenModel, po);
  const std::vector<EngineCase> ks = cases(engine_->tokenizer());
  std::vector<std::shared_ptr<JobCollector>> sinks;
  for (const EngineCase& k : ks) {
    auto sink = std::make_shared<JobCollector>();
    ASSERT_EQ(engine_->submit(make_job(k), sink).code, Admission::kAccepted);
    sinks.push_back(sink);
  }
  for (size_t i = 0; i < ks.size(); ++i) {
    sinks[i]->wait();
    const PipelineInput in = pipeline_input(ks[i]);
    GenerationOptions o = with_defaults(pipeline->generation_defaults());
    o.max_new_tokens = ks[i].max_new_tokens;
    o.ignore_eos = true;
    o.block_size = kBlockSize;
    const GenerationResult want = generate(*pipeline, prepare(*pipeline, in.items, in.images), o);
    EXPECT_EQ(sinks[i]->tokens, want.token_ids) << "case " << i;
    std::vector<float> want_lp;
    for (double lp : want.logprobs) want_lp.push_back(static_cast<float>(lp));
    expect_same_bits(sinks[i]->logprobs, want_lp, "case " + std::to_string(i));
  }
}

INSTANTIATE_TEST_SUITE_P(WeightTypes, EngineWeightsTest,
                         ::testing::Values(Param{"bfloat16", "float32"}, Param{"int8", "float32"},
                                           Param{"bfloat16", "bfloat16"}, Param{"int8", "bfloat16"},
                                           Param{"float32", "float32"}),
                         [](const auto& info) {
                           return info.param.weights + "_weights_" + info.param.dtype + "_compute";
                         });

}  // namespace
}  // namespace flamingo
