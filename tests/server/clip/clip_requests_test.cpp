// ClipRequestBuilder: every Embed/Classify limit names its field and flag, label texts come from
// the template, long texts are cut to the context and listed, images go through the shared
// checks (empty, not PNG/JPEG) and are decoded once per distinct content.
#include "server/clip/clip_requests.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "model/image_preprocess.h"

namespace flamingo {
namespace {

const std::string kGolden = std::string(FLAMINGO_SOURCE_DIR) + "/tests/golden/clip-tiny";

std::string file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class ClipRequests : public ::testing::Test {
 protected:
  ClipRequests()
      : tokenizer_(ClipTokenizer::load(kGolden + "/model")),
        builder_(*tokenizer_, load_clip_preprocess_config(kGolden + "/model", 40), limits(), 77),
        png_(file_bytes(kGolden + "/images/green_triangle.png")) {}

  static ServerLimits limits() {
    ServerLimits l;
    l.max_embed_images = 3;
    l.max_embed_texts = 4;
    l.max_labels = 5;
    l.max_text_bytes = 1000;
    return l;
  }
  std::string error_of(const std::function<void()>& f) {
    try {
      f();
    } catch (const InvalidRequest& e) {
      return e.what();
    }
    return "(no error)";
  }

  std::unique_ptr<ClipTokenizer> tokenizer_;
  ClipRequestBuilder builder_;
  std::string png_;
};

TEST_F(ClipRequests, EmbedTokenizesTextsAndDecodesEachImageOnce) {
  EmbedInput in;
  in.images = {{png_, "images[0]"}, {png_, "images[1]"}};
  const std::string long_text(300, 'a');  // > 77 tokens
  in.texts = {"a green triangle", long_text};
  const EmbedJob job = builder_.build_embed(in);
  ASSERT_EQ(job.images.size(), 2u);
  EXPECT_EQ(job.images[0].key, job.images[1].key);
  EXPECT_EQ(job.images[0].pixels.size(), 3u * 40 * 40);
  EXPECT_EQ(job.texts[0], tokenizer_->encode("a green triangle"));
  EXPECT_EQ(job.texts[1].size(), 77u);
  EXPECT_EQ(job.texts[1].back(), tokenizer_->eos_id());
  EXPECT_EQ(job.truncated, std::vector<int32_t>{1});
}

TEST_F(ClipRequests, EmbedLimitsNameTheFieldAndFlag) {
  EXPECT_EQ(error_of([&] { builder_.build_embed({}); }),
            "images: an Embed request needs at least one image or text");
  EmbedInput many_images;
  for (int i = 0; i < 4; ++i)
    many_images.images.push_back({png_, "images[" + std::to_string(i) + "]"});
  EXPECT_EQ(error_of([&] { builder_.build_embed(many_images); }),
            "images: 4 images exceed the limit 3 (--max-embed-images)");
  EmbedInput many_texts;
  many_texts.texts.assign(5, "x");
  EXPECT_EQ(error_of([&] { builder_.build_embed(many_texts); }),
            "texts: 5 texts exceed the limit 4 (--max-embed-texts)");
  const std::string big(1001, 'a');
  EmbedInput long_text;
  long_text.texts = {big};
  EXPECT_EQ(error_of([&] { builder_.build_embed(long_text); }),
            "texts: 1001 bytes of text exceed the limit 1000 (--max-text-bytes)");
  ServerLimits small = limits();
  small.max_embed_text_bytes = 10;
  const ClipRequestBuilder strict(*tokenizer_, load_clip_preprocess_config(kGolden + "/model", 40),
                                  small, 77);
  EmbedInput eleven;
  eleven.texts = {"ok", "eleven byte"};
  EXPECT_EQ(error_of([&] { strict.build_embed(eleven); }),
            "texts[1]: 11 bytes exceed the limit 10 (--max-embed-text-bytes; a CLIP reads 77 "
            "tokens)");
  EmbedInput bad_utf8;
  bad_utf8.texts = {"ok", "caf\xc3"};
  EXPECT_EQ(error_of([&] { builder_.build_embed(bad_utf8); }), "texts[1]: invalid UTF-8 at byte 3");
  EmbedInput empty_image;
  empty_image.images = {{"", "images[0]"}};
  EXPECT_NE(
      error_of([&] { builder_.build_embed(empty_image); }).find("images[0].data: empty image"),
      std::string::npos);
  EmbedInput gif;
  gif.images = {{"GIF89a....", "images[0]"}};
  EXPECT_EQ(error_of([&] { builder_.build_embed(gif); }).rfind("images[0].data: ", 0), 0u);
}

TEST_F(ClipRequests, ClassifyRendersTheTemplatePerLabel) {
  ClassifyInput in;
  in.image = {png_, "image"};
  in.labels = {"cat", "green triangle"};
  const EmbedJob job = builder_.build_classify(in);
  ASSERT_EQ(job.texts.size(), 2u);
  EXPECT_EQ(job.texts[0], tokenizer_->encode("a photo of a cat."));
  EXPECT_EQ(job.texts[1], tokenizer_->encode("a photo of a green triangle."));
  in.text_template = "{}, drawn";
  EXPECT_EQ(builder_.build_classify(in).texts[0], tokenizer_->encode("cat, drawn"));
}

TEST_F(ClipRequests, ClassifyLimitsNameTheFieldAndFlag) {
  ClassifyInput in;
  in.image = {png_, "image"};
  EXPECT_EQ(error_of([&] { builder_.build_classify(in); }),
            "labels: at least one label is required");
  in.labels.assign(6, "x");
  EXPECT_EQ(error_of([&] { builder_.build_classify(in); }),
            "labels: 6 labels exceed the limit 5 (--max-labels)");
  in.labels = {"x"};
  in.text_template = "no slot";
  EXPECT_EQ(error_of([&] { builder_.build_classify(in); }),
            "template: must contain \"{}\" exactly once (where the label goes)");
  in.text_template = "{} and {}";
  EXPECT_NE(error_of([&] { builder_.build_classify(in); }).find("exactly once"), std::string::npos);
  in.text_template = "";
  in.image = {"", "image"};
  EXPECT_EQ(error_of([&] { builder_.build_classify(in); }).rfind("image.data: empty image", 0), 0u);
}

}  // namespace
}  // namespace flamingo
