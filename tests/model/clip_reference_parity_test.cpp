// ClipTokenizer, CLIP preprocessing and ClipModel against tools/reference_clip.py (an independent
// torch 1.13 reference, itself checked against transformers' golden outputs by
// tests/model/test_reference_clip.py) on CLIP checkpoints that tools/make_checkpoint.py
// --preset clip-tiny generates at test time: sizes the golden set does not have (text and
// vision 32 wide, 2 layers, 4 heads, image 32, patch 8, projection 16, a 200-merge BPE vocab),
// the argmax text-pooling rule (eos_token_id 2, OpenAI's configs) with quick_gelu, and the
// first-eos rule with gelu.
// Inputs: texts with punctuation, digits, accents (composed and decomposed), CJK/kana/hangul,
// emoji, apostrophes, repeated and unusual whitespace, control/format characters, special
// tokens, upper-case Greek/Turkish/German, an empty and a truncated text; 8 synthetic pixel
// arrays and the 8 golden image files (PNG RGB/RGBA/L, JPEG) preprocessed at size 32.
// Bars (fp32): token ids, tokens and the truncation flag exact; pixel values 1e-6; pooled
// outputs and embeddings 1e-4; logits 1e-3; logit scale 1e-6 (relative); batch invariance:
// each text alone and among all the texts, and each image alone and among the 16, give the
// same bits.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "model/clip_model.h"
#include "model/clip_tokenizer.h"
#include "model/image_decode.h"
#include "model/image_preprocess.h"
#include "tests/common/npy.h"
#include "tests/common/process.h"

namespace flamingo {
namespace {

using testing::run_command;
using testing::TempDir;

constexpr double kPixelTol = 1e-6;
constexpr double kEmbedTol = 1e-4;  // pooled outputs and L2-normalized embeddings
constexpr double kLogitTol = 1e-3;
constexpr double kScaleRelTol = 1e-6;

const std::string kGoldenImages =
    std::string(FLAMINGO_SOURCE_DIR) + "/tests/golden/clip-tiny/images/";

struct Variant {
  std::string name;
  std::string flags;
  std::string pooling;  // the reference's text_pooling
};

void PrintTo(const Variant& v, std::ostream* os) { *os << v.name; }

std::string python_tool(const std::string& tool) {
  return std::string("'") + FLAMINGO_PYTHON3 + "' '" + FLAMINGO_SOURCE_DIR + "/tools/" + tool + "'";
}

std::vector<std::string> texts() {
  std::string long_text;
  for (int i = 0; i < 20; ++i) long_text += "a small orange heart next to a big black cross ";
  return {
      "a photo of a cat",
      "Hello, world!!! (really?) -- yes... #1 @home; 50% off & \"quotes\" <tags> {x}",
      "version 10.5 has 2024 shapes, 7 sides and 3.14159 ratios",
      "Cr\u00e8me br\u00fbl\u00e9e \u00e0 la carte, na\u00efve fa\u00e7ade; cafe\u0301 "
      "decomposed",
      "\u5c0f\u72d7 runs in \u6771\u4eac and \u3072\u3089\u304c\u306a \u30ab\u30bf\u30ab\u30ca "
      "\ud55c\uad6d\uc5b4",
      "\U0001f697 a car \U0001f333\U0001f333 near \U0001f44d\U0001f3fd and \u2764\ufe0f!",
      "we're here, you'll see; it's Tom's 'quoted' words, I'D GO, can't won't",
      "two\t\tcircles\n\n and   a \u3000 square\u00a0 \r\n  ",
      "bell\x07 zero\u200bwidth soft\u00adhyphen nul\x01",
      "\u03a3\u038a\u03a3\u03a5\u03a6\u039f\u03a3 \u0130stanbul STRASSE \u1e9e",
      "a <|endoftext|> b <|startoftext|>c",
      long_text,
      "",
      "x",
  };
}

// 8 deterministic [3, s, s] pixel arrays: zeros, a constant, per-channel constants, gradients,
// a checkerboard and three normal draws.
at::Tensor synthetic_pixels(int64_t s) {
  std::vector<at::Tensor> all;
  all.push_back(at::zeros({3, s, s}));
  all.push_back(at::tensor({-1.0f, 0.25f, 2.0f}).view({3, 1, 1}).expand({3, s, s}));
  all.push_back(at::linspace(-2, 2, s).view({1, 1, s}).expand({3, s, s}));
  all.push_back(at::linspace(-2, 2, s * s).view({1, s, s}).expand({3, s, s}) *
                at::tensor({1.0f, -0.5f, 0.25f}).view({3, 1, 1}));
  const at::Tensor r = at::arange(s).view({s, 1}), c = at::arange(s).view({1, s});
  all.push_back(((r + c) % 2 * 2 - 1).to(at::kFloat).expand({3, s, s}));
  for (int seed : {1, 2, 3}) {
    at::manual_seed(seed);
    all.push_back(at::randn({3, s, s}) * (0.5 * seed));
  }
  return at::stack(all).contiguous();
}

const std::vector<std::string> kImageFiles = {
    "green_triangle.png", "green_square.png", "yellow_triangle.png",
    "yellow_square.png",  "noise_tall.png",   "gradient.jpg",
    "rgba.png",           "gray_L.png"};

double max_diff(const at::Tensor& got, const nlohmann::json& want) {
  const auto w = want.get<std::vector<double>>();
  EXPECT_EQ(got.numel(), static_cast<int64_t>(w.size()));
  const at::Tensor g = got.to(at::kDouble).contiguous().view(-1);
  double d = 0;
  for (size_t i = 0; i < w.size() && i < static_cast<size_t>(g.numel()); ++i) {
    d = std::max(d, std::abs(g.data_ptr<double>()[i] - w[i]));
  }
  return d;
}

class ClipReferenceParity : public ::testing::TestWithParam<Variant> {};

TEST_P(ClipReferenceParity, TokensEmbeddingsAndLogitsMatchReference) {
  const Variant& v = GetParam();
  TempDir dir("flamingo_clip_parity");
  const std::string model_dir = dir.file("model");
  auto made = run_command(python_tool("make_checkpoint.py") + " --preset clip-tiny --out '" +
                          model_dir + "' " + v.flags + " 2>&1");
  ASSERT_EQ(made.exit_code, 0) << made.output;

  ModelOptions o;
  o.dtype = "float32";
  const auto model = ClipModel::load(model_dir, o);
  const auto tok = ClipTokenizer::load(model_dir);
  const int64_t s = model->config().vision.image_size;
  ASSERT_EQ(s, 32);

  const std::vector<std::string> all_texts = texts();
  {
    std::ofstream out(dir.file("texts.json"), std::ios::binary);
    out << nlohmann::json(all_texts).dump();
  }
  const at::Tensor synthetic = synthetic_pixels(s);
  testing::save_npy(dir.file("pixels.npy"), "<f4", {synthetic.size(0), 3, s, s},
                    synthetic.data_ptr<float>());
  std::string images;
  for (const auto& f : kImageFiles) images += " '" + kGoldenImages + f + "'";
  auto ref =
      run_command(python_tool("reference_clip.py") + " --model '" + model_dir + "' --texts-json '" +
                  dir.file("texts.json") + "' --pixels-npy '" + dir.file("pixels.npy") +
                  "' --images" + images + " --pixels-out '" + dir.file("preprocessed.npy") +
                  "' --out '" + dir.file("ref.json") + "' 2>&1");
  ASSERT_EQ(ref.exit_code, 0) << ref.output;
  nlohmann::json want;
  {
    std::ifstream in(dir.file("ref.json"));
    want = nlohmann::json::parse(in);
  }
  EXPECT_EQ(want["text_pooling"], v.pooling);
  ASSERT_EQ(want["texts"].size(), all_texts.size());
  ASSERT_EQ(want["images"].size(), synthetic.size(0) + kImageFiles.size());

  // Tokenizer: ids, tokens and the truncation flag exact.
  std::vector<std::vector<int32_t>> ids;
  int truncated_texts = 0;
  for (size_t i = 0; i < all_texts.size(); ++i) {
    const auto& w = want["texts"][i];
    bool truncated = false;
    ids.push_back(tok->encode(all_texts[i], 77, &truncated));
    EXPECT_EQ(ids.back(), w["input_ids"].get<std::vector<int32_t>>())
        << "text " << i << ": " << all_texts[i];
    EXPECT_EQ(tok->tokens(all_texts[i]), w["tokens"].get<std::vector<std::string>>())
        << "text " << i;
    EXPECT_EQ(truncated, w["truncated"].get<bool>()) << "text " << i;
    truncated_texts += truncated;
  }
  EXPECT_EQ(truncated_texts, 1);

  // Preprocessing of the image files.
  const ImagePreprocessConfig pcfg = load_clip_preprocess_config(model_dir, static_cast<int>(s));
  const testing::NpyArray pre = testing::load_npy(dir.file("preprocessed.npy"));
  ASSERT_EQ(pre.shape, (std::vector<int64_t>{static_cast<int64_t>(kImageFiles.size()), 3, s, s}));
  std::vector<at::Tensor> decoded;
  for (size_t k = 0; k < kImageFiles.size(); ++k) {
    const RgbImage img = read_image_file(kGoldenImages + kImageFiles[k], ImageLimits{}, pcfg.alpha);
    std::vector<float> px = preprocess_image(img, pcfg);
    ASSERT_EQ(px.size(), static_cast<size_t>(3 * s * s));
    const float* r = pre.as<float>() + k * 3 * s * s;
    double d = 0;
    for (size_t j = 0; j < px.size(); ++j) d = std::max(d, std::abs(double(px[j]) - r[j]));
    EXPECT_LE(d, kPixelTol) << kImageFiles[k];
    decoded.push_back(at::from_blob(px.data(), {3, s, s}, at::kFloat).clone());
  }
  const at::Tensor pixels = at::cat({synthetic, at::stack(decoded)}, 0);  // 16 images

  // Embeddings and logits.
  const at::Tensor t_pooled = model->text_pooled(ids);
  const at::Tensor t_emb = model->text_embeds(ids);
  ASSERT_EQ(t_emb.size(1), 16);
  double worst_text = 0, worst_image = 0, worst_logit = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    const auto& w = want["texts"][i];
    const double d =
        std::max(max_diff(t_pooled[i], w["pooled"]), max_diff(t_emb[i], w["text_embeds"]));
    EXPECT_LE(d, kEmbedTol) << "text " << i << ": " << all_texts[i];
    worst_text = std::max(worst_text, d);
  }
  const at::Tensor i_pooled = model->image_pooled(pixels);
  const at::Tensor i_emb = model->image_embeds(pixels);
  for (int64_t k = 0; k < pixels.size(0); ++k) {
    const auto& w = want["images"][k];
    const double d =
        std::max(max_diff(i_pooled[k], w["pooled"]), max_diff(i_emb[k], w["image_embeds"]));
    EXPECT_LE(d, kEmbedTol) << "image " << k << ": " << w["source"];
    worst_image = std::max(worst_image, d);
  }
  const double scale = want["logit_scale_exp"].get<double>();
  EXPECT_NEAR(model->logit_scale(), scale, kScaleRelTol * scale);
  EXPECT_NEAR(scale, 20.0, 1e-4);  // ln(20) in the checkpoint, not logit_scale_init_value
  const at::Tensor logits = i_emb.matmul(t_emb.t()) * model->logit_scale();
  for (int64_t k = 0; k < logits.size(0); ++k) {
    const double d = max_diff(logits[k], want["logits_per_image"][k]);
    EXPECT_LE(d, kLogitTol) << "image " << k;
    worst_logit = std::max(worst_logit, d);
  }
  // The outputs must have spread, else the comparison would prove little.
  EXPECT_GT((logits.max() - logits.min()).item<double>(), 1.0);
  std::cout << "[" << v.name << "] max |d|: text " << worst_text << ", image " << worst_image
            << ", logits " << worst_logit << "\n";

  // Batch invariance: the same bits alone or in a batch.
  for (size_t i = 0; i < ids.size(); ++i) {
    EXPECT_TRUE(at::equal(model->text_embeds({ids[i]})[0], t_emb[i])) << "text " << i;
    EXPECT_TRUE(at::equal(model->text_pooled({ids[i]})[0], t_pooled[i])) << "text " << i;
  }
  for (int64_t k = 0; k < pixels.size(0); ++k) {
    EXPECT_TRUE(at::equal(model->image_embeds(pixels.slice(0, k, k + 1))[0], i_emb[k]))
        << "image " << k;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Generated, ClipReferenceParity,
    ::testing::Values(Variant{"argmax_pooling_quick_gelu", "", "argmax"},
                      Variant{"first_eos_pooling_gelu",
                              "--clip-eos-rule first --clip-hidden-act gelu --seed 7",
                              "first eos_token_id 713"}),
    [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace flamingo
