// The CUDA decoder (model/cuda_decoder.cpp) on the GPU (DeviceOps) gives the bits of the same
// step through the kernels' CPU references (HostOps), which cuda_decoder_test holds against
// FlamingoModel and transformers: every golden prompt's logits, then three cached decode steps.
// Label gpu: skipped, saying why, where no CUDA device answers.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "model/cuda_decoder.h"
#include "model/cuda_decoder_checkpoint.h"
#include "tests/common/golden_model.h"
#include "tests/kernels/cuda/gpu_test.h"

namespace flamingo {
namespace {

using testing::golden_model;
using testing::golden_path;
using testing::golden_prompt;
using testing::load_tensor;

class CudaDecoderGpu : public kernels::cuda::testing::GpuTest,
                       public ::testing::WithParamInterface<std::string> {};

// Prefill of the golden prompt, then three greedy steps: every step's logits, on `ops`.
std::vector<std::vector<float>> run(kernels::cuda::DecoderOps& ops, const std::string& c) {
  const Checkpoint ckpt = Checkpoint::open(golden_path("model"));
  const ModelConfig config = load_model_config(golden_path("model"));
  CudaDecoder d(CudaDecoderConfig::from(config, 512, 64, 8), ops,
                cuda_decoder_weights(ckpt, config));
  const FlamingoModel& m = golden_model("model", "bfloat16", "bfloat16");
  const at::Tensor latents =
      m.resample(m.encode_vision(load_tensor("cases/" + c + "/pixel_values.npy")[0]))
          .to(at::kBFloat16)
          .contiguous();
  std::vector<CudaDecoderImage> images;
  std::vector<const CudaDecoderImage*> ptrs;
  for (int64_t n = 0; n < latents.size(0); ++n) {
    std::vector<uint16_t> host(latents.size(1) * latents.size(2));
    std::memcpy(host.data(), latents[n].data_ptr(), host.size() * 2);
    images.push_back(d.image_kv(host, latents.size(1)));
  }
  for (auto& i : images) ptrs.push_back(&i);
  const PreparedPrompt p = golden_prompt(m, c);
  std::vector<int32_t> ids = p.ids, image = p.image_of_token;
  const int64_t v = config.total_vocab();
  std::vector<std::vector<float>> out;
  int64_t done = 0;
  for (int step = 0; step < 4; ++step) {
    const int64_t n = static_cast<int64_t>(ids.size());
    FlatBatch b;
    b.block_tables.emplace_back();
    for (int64_t blk = 0; blk < (n + 7) / 8; ++blk) b.block_tables[0].push_back(blk);
    for (int64_t i = done; i < n; ++i) {
      b.token_ids.push_back(ids[i]);
      b.positions.push_back(static_cast<int32_t>(i));
      b.seq_of_token.push_back(0);
      b.slots.push_back(i);
      b.image_of_token.push_back(image[i]);
      b.logit_rows.push_back(static_cast<int32_t>(i - done));
    }
    out.push_back(d.forward(b, ptrs));
    const auto last = out.back().end() - v;
    ids.push_back(static_cast<int32_t>(std::max_element(last, last + v) - last));
    image.push_back(image.back());
    done = n;
  }
  for (auto& i : images) d.release_image(i);
  return out;
}

TEST_P(CudaDecoderGpu, EqualsTheHostStepBitForBit) {
  auto host = kernels::cuda::make_host_ops();
  auto device = kernels::cuda::make_device_ops(nullptr);
  EXPECT_EQ(run(*device, GetParam()), run(*host, GetParam()));
}

INSTANTIATE_TEST_SUITE_P(Golden, CudaDecoderGpu, ::testing::ValuesIn(testing::golden_cases()));

}  // namespace
}  // namespace flamingo
