// The engine's CUDA model (server/engine/engine_model_cuda.cpp) run through the kernels' CPU
// references (HostOps: the bits the GPU must give, model/cuda_decoder_gpu_test) on the golden
// tiny checkpoint inside a real engine: concurrent greedy requests (images, mixed prefill and
// decode steps) give the bits each gives alone; each request's tokens follow the CPU model's in
// bfloat16 with logprobs within the bfloat16 bar (0.3) while they agree; what it describes;
// settings it cannot honour and a missing GPU are errors that say so.
#include "server/engine/engine_model_cuda.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <string>
#include <vector>

#include "kernels/cuda/decoder_ops.h"
#include "model/error.h"
#include "server/engine/engine.h"
#include "tests/common/engine_jobs.h"

namespace flamingo {
namespace {

using testing::EngineCase;
using testing::golden_job;
using testing::JobCollector;
using testing::kGoldenModel;

EngineConfig config() {
  EngineConfig c;
  c.model_dir = kGoldenModel;
  c.limits.max_running_requests = 8;
  c.limits.max_queued_requests = 32;
  c.token_budget = 64;
  c.block_size = 4;
  c.prefix_caching = false;
  return c;
}

std::vector<EngineCase> cases() {
  const std::vector<std::vector<std::string>> images = {
      {}, {"cat_face_28x28.png"}, {"chair_baseline_100x80.jpg", "leaf_42x42.png"}};
  const std::vector<std::string> texts = {
      "a photo of the cat", "what is this? Answer:", "the green leaf near the blue mug and",
      "sitting on the chair"};
  std::vector<EngineCase> out;
  for (int i = 0; i < 6; ++i) {
    EngineCase k;
    k.images = images[i % images.size()];
    k.text = texts[i % texts.size()];
    k.max_new_tokens = 4 + i % 3;
    out.push_back(k);
  }
  return out;
}

struct Outputs {
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
};

// Each case alone, then all at once (when `together`), through `engine`.
std::vector<Outputs> run(Engine& engine, bool together) {
  std::vector<Outputs> out;
  std::vector<std::shared_ptr<JobCollector>> sinks;
  for (const EngineCase& k : cases()) {
    GenerateJob job = golden_job(engine, k);
    job.ignore_eos = true;
    auto sink = std::make_shared<JobCollector>();
    EXPECT_EQ(engine.submit(std::move(job), sink).code, Admission::kAccepted);
    if (!together) sink->wait();
    sinks.push_back(sink);
  }
  for (auto& s : sinks) {
    s->wait();
    EXPECT_EQ(s->outcome.status, JobStatus::kLength);
    out.push_back({s->tokens, s->logprobs});
  }
  return out;
}

TEST(EngineModelCuda, ConcurrentEqualsSoloBitForBitAndFollowsTheCpuModel) {
  std::unique_ptr<Engine> engine =
      Engine::start(config(), load_cuda_engine_model(config(), kernels::cuda::make_host_ops()));
  EXPECT_EQ(engine->description().kernel_isa, "cuda (host)");
  EXPECT_EQ(engine->description().dtype, "bfloat16");
  const std::vector<Outputs> alone = run(*engine, false), together = run(*engine, true);
  ASSERT_EQ(alone.size(), together.size());
  for (size_t i = 0; i < alone.size(); ++i) {
    EXPECT_EQ(together[i].tokens, alone[i].tokens) << "case " << i;
    ASSERT_EQ(together[i].logprobs.size(), alone[i].logprobs.size());
    for (size_t t = 0; t < alone[i].logprobs.size(); ++t) {
      EXPECT_EQ(std::bit_cast<uint32_t>(together[i].logprobs[t]),
                std::bit_cast<uint32_t>(alone[i].logprobs[t]))
          << "case " << i << " token " << t;
    }
  }
  EngineConfig cpu = config();
  cpu.dtype = "bfloat16";
  cpu.weights = "bfloat16";
  const std::vector<Outputs> want = run(*Engine::start(cpu), false);
  int compared = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    for (size_t t = 0; t < want[i].tokens.size(); ++t) {
      EXPECT_NEAR(alone[i].logprobs[t], want[i].logprobs[t], 0.3) << "case " << i << " token " << t;
      ++compared;
      if (alone[i].tokens[t] != want[i].tokens[t]) break;  // contexts differ from here on
    }
  }
  EXPECT_GE(compared, 12);
}

TEST(EngineModelCuda, SettingsItCannotHonourAreErrors) {
  EngineConfig c = config();
  c.dtype = "float32";
  EXPECT_THROW(load_cuda_engine_model(c, kernels::cuda::make_host_ops()), Error);
  c = config();
  c.weights = "int8";
  try {
    load_cuda_engine_model(c, kernels::cuda::make_host_ops());
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--weights must be auto or bfloat16, got int8"),
              std::string::npos)
        << e.what();
  }
}

TEST(EngineModelCuda, DeviceChoice) {
  EngineConfig c = config();
  EXPECT_EQ(load_device_engine_model(c), nullptr);  // cpu
  c.device = "gpu";
  EXPECT_THROW(load_device_engine_model(c), Error);
  std::string why;
  if (cuda_decoder_available(&why)) GTEST_SKIP() << "a GPU answers here";
  c.device = "auto";
  EXPECT_EQ(load_device_engine_model(c), nullptr);  // falls back to the CPU
  c.device = "cuda";
  try {
    load_device_engine_model(c);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--device cuda: " + why), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace flamingo
