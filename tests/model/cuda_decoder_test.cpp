// The CUDA decoder's step (model/cuda_decoder.cpp) run through the kernels' CPU references
// (HostOps: the bits the GPU must give, cuda_decoder_gpu_test) on the golden tiny IDEFICS, against
// FlamingoModel: every golden prompt's logprobs within the bar the CPU model's own bfloat16
// compute has against float32 (0.3, tests/model/generation_test.cpp), greedy tokens equal to
// transformers' where its top-1/top-2 margin is above 0.5, a prefill followed by cached decode
// steps equal to recomputing the prompt, and bad batches rejected with the field named.
#include "model/cuda_decoder.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <vector>

#include "model/cuda_decoder_checkpoint.h"
#include "tests/common/golden_model.h"

namespace flamingo {
namespace {

using kernels::cuda::DecoderOps;
using testing::golden_cases;
using testing::golden_model;
using testing::golden_path;
using testing::golden_prompt;
using testing::load_tensor;

constexpr double kLogprobTol = 0.3;  // as FlamingoModel's bfloat16 compute against float32
constexpr double kMarginBar = 0.5;   // greedy equal where transformers' margin is above this
constexpr int64_t kBlock = 8;

// A decoder on `ops` over the golden checkpoint, its KV cache 64 blocks of 8.
struct GoldenDecoder {
  Checkpoint ckpt;
  ModelConfig config;
  std::unique_ptr<CudaDecoder> decoder;
  explicit GoldenDecoder(DecoderOps& ops)
      : ckpt(Checkpoint::open(golden_path("model"))),
        config(load_model_config(golden_path("model"))) {
    decoder = std::make_unique<CudaDecoder>(CudaDecoderConfig::from(config, 512, 64, kBlock), ops,
                                            cuda_decoder_weights(ckpt, config));
  }
};

// The golden case's images as CudaDecoder K/V, from FlamingoModel's vision tower and perceiver.
std::vector<CudaDecoderImage> images_of(CudaDecoder& d, const std::string& c) {
  const FlamingoModel& m = golden_model("model", "bfloat16", "bfloat16");
  at::Tensor latents =
      m.resample(m.encode_vision(load_tensor("cases/" + c + "/pixel_values.npy")[0]))
          .to(at::kBFloat16)
          .contiguous();
  std::vector<CudaDecoderImage> out;
  for (int64_t n = 0; n < latents.size(0); ++n) {
    std::vector<uint16_t> host(latents.size(1) * latents.size(2));
    std::memcpy(host.data(), latents[n].data_ptr(), host.size() * 2);
    out.push_back(d.image_kv(host, latents.size(1)));
  }
  return out;
}

// Tokens [begin, end) of one sequence (positions = indices, slots in blocks 0, 1, ...).
FlatBatch tokens(const std::vector<int32_t>& ids, const std::vector<int32_t>& image, int64_t begin,
                 int64_t end, bool all_logits) {
  FlatBatch b;
  b.block_tables.emplace_back();
  for (int64_t blk = 0; blk < (end + kBlock - 1) / kBlock; ++blk) b.block_tables[0].push_back(blk);
  for (int64_t i = begin; i < end; ++i) {
    b.token_ids.push_back(ids[i]);
    b.positions.push_back(static_cast<int32_t>(i));
    b.seq_of_token.push_back(0);
    b.slots.push_back(i);
    b.image_of_token.push_back(image[i]);
    if (all_logits || i == end - 1) b.logit_rows.push_back(static_cast<int32_t>(i - begin));
  }
  return b;
}

std::vector<const CudaDecoderImage*> pointers(const std::vector<CudaDecoderImage>& v) {
  std::vector<const CudaDecoderImage*> p;
  for (const auto& i : v) p.push_back(&i);
  return p;
}

double log_softmax_at(const float* row, int64_t n, int64_t at) {
  const double m = *std::max_element(row, row + n);
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += std::exp(row[i] - m);
  return row[at] - m - std::log(s);
}

class CudaDecoderGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(CudaDecoderGolden, PromptLogprobsWithinTheBf16BarOfFloat32) {
  auto ops = kernels::cuda::make_host_ops();
  GoldenDecoder g(*ops);
  const FlamingoModel& m32 = golden_model("model", "float32");
  const PreparedPrompt p = golden_prompt(m32, GetParam());
  const std::vector<double> want = prompt_logprobs(m32, p);
  std::vector<CudaDecoderImage> images = images_of(*g.decoder, GetParam());
  const int64_t n = static_cast<int64_t>(p.ids.size());
  const std::vector<float> logits =
      g.decoder->forward(tokens(p.ids, p.image_of_token, 0, n, true), pointers(images));
  const int64_t v = g.config.total_vocab();
  ASSERT_EQ(static_cast<int64_t>(logits.size()), n * v);
  double worst = 0;
  for (int64_t i = 1; i < n; ++i) {
    worst = std::max(worst, std::abs(log_softmax_at(&logits[(i - 1) * v], v, p.ids[i]) - want[i]));
  }
  EXPECT_LE(worst, kLogprobTol);
  RecordProperty("max_prompt_logprob_diff", std::to_string(worst));
  for (auto& i : images) g.decoder->release_image(i);
}

TEST_P(CudaDecoderGolden, GreedyDecodeEqualsTransformersWhereTheMarginIsClear) {
  auto ops = kernels::cuda::make_host_ops();
  GoldenDecoder g(*ops);
  const FlamingoModel& m32 = golden_model("model", "float32");
  PreparedPrompt p = golden_prompt(m32, GetParam());
  std::ifstream in(golden_path("cases/" + GetParam() + "/generation.json"));
  const nlohmann::json gen = nlohmann::json::parse(in)["use_cache_true"];
  const auto ref = gen["new_token_ids"].get<std::vector<int32_t>>();
  const auto margin = gen["top1_top2_logit_margin"].get<std::vector<double>>();
  std::vector<CudaDecoderImage> images = images_of(*g.decoder, GetParam());
  const int64_t v = g.config.total_vocab();
  std::vector<int32_t> ids = p.ids, image = p.image_of_token;
  int64_t done = 0;
  std::vector<int32_t> got;
  std::vector<std::vector<float>> step_logits;
  for (size_t step = 0; step < ref.size(); ++step) {  // prefill, then one token per step
    const int64_t n = static_cast<int64_t>(ids.size());
    step_logits.push_back(g.decoder->forward(tokens(ids, image, done, n, false), pointers(images)));
    const std::vector<float>& logits = step_logits.back();
    const int32_t next =
        static_cast<int32_t>(std::max_element(logits.begin(), logits.begin() + v) - logits.begin());
    got.push_back(next);
    done = n;
    ids.push_back(next);
    image.push_back(image.back());  // new tokens see what the last prompt token sees
  }
  for (size_t i = 0; i < ref.size(); ++i) {
    if (margin[i] > kMarginBar) {
      EXPECT_EQ(got[i], ref[i]) << "step " << i;
    }
    if (got[i] != ref[i]) break;  // contexts differ from here on
  }
  // Cached decoding equals recomputing the whole sequence in one step, bit for bit: every
  // row's arithmetic depends on that row and its context only.
  const int64_t n = static_cast<int64_t>(ids.size()) - 1;
  auto fresh_ops = kernels::cuda::make_host_ops();
  GoldenDecoder fresh(*fresh_ops);
  std::vector<CudaDecoderImage> fresh_images = images_of(*fresh.decoder, GetParam());
  const std::vector<float> all =
      fresh.decoder->forward(tokens(ids, image, 0, n, true), pointers(fresh_images));
  for (size_t i = 0; i < got.size(); ++i) {
    const auto row = all.begin() + (p.ids.size() - 1 + i) * v;
    EXPECT_TRUE(std::equal(row, row + v, step_logits[i].begin())) << "step " << i;
  }
  for (auto& i : images) g.decoder->release_image(i);
  for (auto& i : fresh_images) fresh.decoder->release_image(i);
}

INSTANTIATE_TEST_SUITE_P(Golden, CudaDecoderGolden, ::testing::ValuesIn(golden_cases()));

TEST(CudaDecoder, BadBatchesNameTheField) {
  auto ops = kernels::cuda::make_host_ops();
  GoldenDecoder g(*ops);
  auto error = [&](const FlatBatch& b) {
    try {
      g.decoder->forward(b, {});
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const std::vector<int32_t> ids = {1, 5, 7}, none = {-1, -1, -1};
  FlatBatch b = tokens(ids, none, 0, 3, true);
  b.token_ids[1] = 100000;
  EXPECT_NE(error(b).find("token id 100000"), std::string::npos) << error(b);
  b = tokens(ids, none, 0, 3, true);
  b.positions[2] = 512;
  EXPECT_NE(error(b).find("position 512"), std::string::npos) << error(b);
  b = tokens(ids, none, 0, 3, true);
  b.image_of_token[0] = 0;
  EXPECT_NE(error(b).find("names image 0"), std::string::npos) << error(b);
  b = tokens(ids, none, 0, 3, true);
  b.slots[0] = 64 * kBlock;
  EXPECT_NE(error(b).find("KV slot"), std::string::npos) << error(b);
  b = tokens(ids, none, 0, 3, true);
  b.logit_rows = {3};
  EXPECT_NE(error(b).find("logit row 3"), std::string::npos) << error(b);
  EXPECT_NE(error(FlatBatch{}).find("empty batch"), std::string::npos);
}

TEST(CudaDecoder, WeightsOfTheWrongSizeAreErrors) {
  auto ops = kernels::cuda::make_host_ops();
  const ModelConfig c = load_model_config(golden_path("model"));
  CudaDecoderConfig dc = CudaDecoderConfig::from(c, 64, 4, kBlock);
  auto short_embed = [](const std::string& name, const std::vector<int64_t>&) {
    if (name != "embed") throw std::logic_error("asked for " + name + " first");
    return std::vector<uint16_t>(7);
  };
  try {
    CudaDecoder d(dc, *ops, short_embed);
    FAIL() << "no error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("weight 'embed' has 7 values"), std::string::npos)
        << e.what();
  }
  dc.heads = 5;
  EXPECT_THROW(CudaDecoder(dc, *ops, short_embed), std::invalid_argument);
}

}  // namespace
}  // namespace flamingo
