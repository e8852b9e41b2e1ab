// ClipModel against transformers' CLIPModel on the golden tiny CLIP (tests/golden/clip-tiny,
// computed by transformers v4.44.2 in fp32): pooled outputs and embeddings of 11 texts (from
// their golden ids) and 8 images (from the processor's pixel values) within 1e-4, logits within
// 1e-3 (the golden README's suggested tolerances), both text-pooling rules, and batch
// invariance: a text or an image alone or among others gives the same bits in fp32.
#include "model/clip_model.h"

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "model/error.h"
#include "tests/common/npy.h"

namespace flamingo {
namespace {

const std::string kGolden = std::string(FLAMINGO_SOURCE_DIR) + "/tests/golden/clip-tiny";

const nlohmann::json& cases() {
  static const nlohmann::json j = [] {
    std::ifstream in(kGolden + "/cases.json");
    return nlohmann::json::parse(in);
  }();
  return j;
}

const ClipModel& model() {
  static const std::unique_ptr<ClipModel> m = [] {
    ModelOptions o;
    o.dtype = "float32";
    return ClipModel::load(kGolden + "/model", o);
  }();
  return *m;
}

std::vector<std::vector<int32_t>> golden_ids() {
  std::vector<std::vector<int32_t>> ids;
  for (const auto& t : cases()["texts"]) ids.push_back(t["input_ids"].get<std::vector<int32_t>>());
  return ids;
}

at::Tensor golden_pixels() {
  std::vector<at::Tensor> all;
  for (const auto& im : cases()["images"]) {
    std::string stem = im["file"].get<std::string>();
    stem = stem.substr(0, stem.rfind('.'));
    const testing::NpyArray a =
        testing::load_npy(kGolden + "/images/" + stem + ".pixel_values.npy");
    all.push_back(at::from_blob(const_cast<float*>(a.as<float>()), a.shape, at::kFloat).clone());
  }
  return at::cat(all, 0);
}

// Max |got[i] - want[i]| over row i of `got` against the JSON list `want`.
double max_diff(const at::Tensor& got, const nlohmann::json& want) {
  const auto w = want.get<std::vector<double>>();
  EXPECT_EQ(got.numel(), static_cast<int64_t>(w.size()));
  const at::Tensor g = got.to(at::kDouble).contiguous();
  double d = 0;
  for (size_t i = 0; i < w.size(); ++i) d = std::max(d, std::abs(g.data_ptr<double>()[i] - w[i]));
  return d;
}

TEST(ClipModel, TextPooledAndEmbeddingsMatchTransformers) {
  const auto ids = golden_ids();
  const at::Tensor pooled = model().text_pooled(ids);
  const at::Tensor embeds = model().text_embeds(ids);
  ASSERT_EQ(embeds.size(1), model().config().projection_dim);
  for (size_t i = 0; i < ids.size(); ++i) {
    const auto& t = cases()["texts"][i];
    EXPECT_LT(max_diff(pooled[i], t["pooled"]), 1e-4) << t["name"];
    EXPECT_LT(max_diff(embeds[i], t["text_embeds"]), 1e-4) << t["name"];
  }
}

TEST(ClipModel, ImagePooledEmbeddingsAndLogitsMatchTransformers) {
  const at::Tensor pixels = golden_pixels();
  const at::Tensor pooled = model().image_pooled(pixels);
  const at::Tensor embeds = model().image_embeds(pixels);
  for (int64_t i = 0; i < pixels.size(0); ++i) {
    const auto& im = cases()["images"][i];
    EXPECT_LT(max_diff(pooled[i], im["pooled"]), 1e-4) << im["file"];
    EXPECT_LT(max_diff(embeds[i], im["image_embeds"]), 1e-4) << im["file"];
  }
  EXPECT_NEAR(model().logit_scale(), cases()["logit_scale_exp"].get<double>(), 1e-5);
  const at::Tensor logits =
      embeds.matmul(model().text_embeds(golden_ids()).t()) * model().logit_scale();
  for (int64_t i = 0; i < logits.size(0); ++i) {
    EXPECT_LT(max_diff(logits[i], cases()["logits_per_image"][i]), 1e-3) << "image " << i;
  }
}

TEST(ClipModel, EmbeddingsAreTheSameBitsAloneOrInABatch) {
  const auto ids = golden_ids();
  const at::Tensor all_texts = model().text_embeds(ids);
  for (size_t i = 0; i < ids.size(); ++i) {
    EXPECT_TRUE(at::equal(model().text_embeds({ids[i]})[0], all_texts[i])) << "text " << i;
  }
  const at::Tensor pixels = golden_pixels();
  const at::Tensor sixteen = at::cat({pixels, pixels.flip(0)}, 0);  // 16 images
  const at::Tensor batch = model().image_embeds(sixteen);
  for (int64_t i = 0; i < pixels.size(0); ++i) {
    const at::Tensor alone = model().image_embeds(pixels.slice(0, i, i + 1))[0];
    EXPECT_TRUE(at::equal(alone, batch[i])) << "image " << i;
    EXPECT_TRUE(at::equal(alone, batch[15 - i])) << "image " << i << " (second copy)";
  }
}

TEST(ClipModel, TextPoolingFollowsTheEosRuleOfTheConfig) {
  // This checkpoint pools at the first eos_token_id (633); OpenAI's configs (eos_token_id 2)
  // pool at the argmax of the ids.
  ClipTextConfig first;
  first.eos_token_id = 633;
  ClipTextConfig argmax;
  argmax.eos_token_id = 2;
  const std::vector<int32_t> ids = {632, 40, 633, 700, 633};
  EXPECT_EQ(model().config().text.eos_token_id, 633);
  // pool_position is the rule itself; the golden tests above check the first-eos rule end to end.
  EXPECT_EQ(ClipText::pool_position_for(first, ids), 2);
  EXPECT_EQ(ClipText::pool_position_for(argmax, ids), 3);
}

TEST(ClipModel, LogitScaleIsReadAsStoredInBfloat16Too) {
  ModelOptions o;
  o.dtype = "bfloat16";
  const auto bf16 = ClipModel::load(kGolden + "/model", o);
  EXPECT_DOUBLE_EQ(bf16->logit_scale(), model().logit_scale());
}

TEST(ClipModel, BadInputsAreClearErrors) {
  EXPECT_THROW(model().text_pooled({{}}), Error);
  EXPECT_THROW(model().text_pooled({std::vector<int32_t>(78, 5)}), Error);
  EXPECT_THROW(model().text_pooled({{632, 634, 633}}), Error);
  EXPECT_THROW(ClipModel::load(kGolden + "/images", ModelOptions{}), Error);
}

}  // namespace
}  // namespace flamingo
