// The CUDA decoder (model/cuda_decoder.cpp) on the GPU (DeviceOps) gives the bits of the same
// steps through the kernels' CPU references (HostOps), which cuda_decoder_test holds against
// FlamingoModel and transformers on the golden checkpoint. Random weights on two small shapes
// (per-head q/k norms or not, scalar or per-channel gates, a gated layer before every layer or
// every second, a K that is not a multiple of 8), three sequences prefilled (two see images,
// one a text-only prompt) and then decoded together for four steps. Torch-free, so the GPU
// machine's build (gpu/CMakeLists.txt) runs it too. Label gpu: skipped, saying why, where no
// CUDA device answers.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "kernels/cuda/bf16_bits.h"
#include "model/cuda_decoder.h"
#include "tests/kernels/cuda/gpu_test.h"

namespace flamingo {
namespace {

using kernels::cuda::round_bf16;

CudaDecoderWeights random_weights(uint32_t seed) {
  return [seed](const std::string& name, const std::vector<int64_t>& shape) {
    std::mt19937 rng(seed + static_cast<uint32_t>(std::hash<std::string>{}(name)));
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    const bool norm = name.size() > 4 && name.compare(name.size() - 4, 4, "norm") == 0;
    const bool gate = name.find("alpha") != std::string::npos;
    std::normal_distribution<float> d(norm ? 1.f : 0.f, norm ? 0.1f : gate ? 0.5f : 0.08f);
    std::vector<uint16_t> v(n);
    for (auto& e : v) e = round_bf16(d(rng));
    return v;
  };
}

// Every step's logits: three sequences' prompts in one step, then four decode steps of all.
std::vector<std::vector<float>> run(kernels::cuda::DecoderOps& ops, const CudaDecoderConfig& c) {
  CudaDecoder d(c, ops, random_weights(7));
  std::mt19937 rng(3);
  std::normal_distribution<float> dist(0.f, 1.f);
  std::vector<CudaDecoderImage> images;
  for (int64_t len : {16, 5}) {
    std::vector<uint16_t> latents(len * c.image_dim);
    for (auto& e : latents) e = round_bf16(dist(rng));
    images.push_back(d.image_kv(latents, len));
  }
  const std::vector<const CudaDecoderImage*> ptrs = {&images[0], &images[1]};
  // Prompts: sequence s has lengths[s] tokens; tokens from first_image[s] on see image[s].
  const std::vector<int64_t> lengths = {20, 9, 13}, first_image = {5, 99, 0};
  const std::vector<int32_t> image = {0, -1, 1};
  std::vector<int64_t> done(3, 0), next(3, 0);
  std::vector<std::vector<float>> out;
  for (int step = 0; step < 5; ++step) {
    FlatBatch b;
    for (int64_t s = 0; s < 3; ++s) {
      b.block_tables.emplace_back();
      for (int64_t k = 0; k < 4; ++k)
        b.block_tables.back().push_back(static_cast<int32_t>(4 * s + k));
      const int64_t end = step == 0 ? lengths[s] : done[s] + 1;
      for (int64_t i = done[s]; i < end; ++i) {
        b.token_ids.push_back(step == 0 ? static_cast<int32_t>((37 * i + 11 * s) % c.vocab)
                                        : static_cast<int32_t>(next[s]));
        b.positions.push_back(static_cast<int32_t>(i));
        b.seq_of_token.push_back(static_cast<int32_t>(s));
        b.slots.push_back(b.block_tables.back()[i / c.block_size] * c.block_size +
                          i % c.block_size);
        b.image_of_token.push_back(i >= first_image[s] ? image[s] : -1);
      }
      b.logit_rows.push_back(static_cast<int32_t>(b.token_ids.size()) - 1);
      done[s] = end;
    }
    out.push_back(d.forward(b, ptrs));
    for (int64_t s = 0; s < 3; ++s) {
      const float* row = &out.back()[s * c.vocab];
      next[s] = std::max_element(row, row + c.vocab) - row;
    }
  }
  for (auto& i : images) d.release_image(i);
  return out;
}

CudaDecoderConfig shape(bool first) {
  CudaDecoderConfig c;
  c.hidden = first ? 128 : 96;
  c.heads = first ? 4 : 2;
  c.intermediate = first ? 256 : 100;
  c.layers = first ? 3 : 4;
  c.cross_interval = first ? 1 : 2;
  c.vocab = 500;
  c.image_dim = first ? 64 : 40;
  c.qk_norms = first;
  c.gate_len = first ? 1 : c.hidden;
  c.max_positions = 64;
  c.num_blocks = 12;
  c.block_size = 8;
  return c;
}

TEST(CudaDecoderSteps, HostRunIsFiniteAndRepeatable) {  // the reference side, on any machine
  for (bool first : {true, false}) {
    auto a = kernels::cuda::make_host_ops(), b = kernels::cuda::make_host_ops();
    const auto x = run(*a, shape(first)), y = run(*b, shape(first));
    ASSERT_EQ(x.size(), 5u);
    for (const auto& step : x) {
      ASSERT_EQ(step.size(), 3u * 500u);
      for (float v : step) ASSERT_TRUE(std::isfinite(v));
    }
    EXPECT_EQ(x, y);
  }
}

using CudaDecoderGpu = kernels::cuda::testing::GpuTest;

TEST_F(CudaDecoderGpu, EqualsTheHostStepsBitForBit) {
  for (bool first : {true, false}) {
    auto host = kernels::cuda::make_host_ops();
    auto device = kernels::cuda::make_device_ops(nullptr);
    EXPECT_EQ(run(*device, shape(first)), run(*host, shape(first))) << "shape " << first;
  }
}

}  // namespace
}  // namespace flamingo
