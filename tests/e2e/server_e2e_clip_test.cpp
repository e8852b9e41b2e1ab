// CLIP through the real server on a loopback port (issue 14): flamingo-server --model on the
// golden tiny CLIP (tests/golden/clip-tiny) answers Embed and Classify with transformers'
// numbers (embeddings within 1e-4, probabilities = softmax of the golden logits within 1e-4),
// GetModelInfo says kind "clip", the IDEFICS methods answer FAILED_PRECONDITION naming the
// kind, and bad inputs get INVALID_ARGUMENT naming the field and the limit. A second server
// serves the default IDEFICS with --clip-model beside it: both kinds answer.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tests/e2e/server_e2e_util.h"

namespace flamingo::e2e {
namespace {

const std::string kClip = std::string(FLAMINGO_SOURCE_DIR) + "/tests/golden/clip-tiny";

const nlohmann::json& cases() {
  static const nlohmann::json j = [] {
    std::ifstream in(kClip + "/cases.json");
    return nlohmann::json::parse(in);
  }();
  return j;
}

double max_diff(const v1::Embedding& e, const nlohmann::json& want) {
  const auto w = want.get<std::vector<double>>();
  EXPECT_EQ(static_cast<size_t>(e.values_size()), w.size());
  double d = 0;
  for (int i = 0; i < e.values_size() && i < static_cast<int>(w.size()); ++i) {
    d = std::max(d, std::abs(e.values(i) - w[i]));
  }
  return d;
}

v1::Image golden_image(size_t i) {
  v1::Image im;
  im.set_data(read_file(kClip + "/images/" + cases()["images"][i]["file"].get<std::string>()));
  return im;
}

class ClipE2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = start_server({"--model", kClip + "/model", "--max-labels", "100"}).release();
  }
  static void TearDownTestSuite() {
    if (server_ != nullptr) EXPECT_EQ(stop_server(*server_), std::optional<int>(0));
    delete server_;
  }
  static ServerProcess* server_;
};
ServerProcess* ClipE2E::server_ = nullptr;

TEST_F(ClipE2E, EmbedMatchesTransformers) {
  const auto stub = make_stub(server_->address());
  v1::EmbedRequest req;
  for (size_t i = 0; i < cases()["images"].size(); ++i) *req.add_images() = golden_image(i);
  for (const auto& t : cases()["texts"]) req.add_texts(t["text"].get<std::string>());
  v1::EmbedResponse resp;
  grpc::ClientContext ctx;
  const grpc::Status s = stub->Embed(&ctx, req, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(resp.image_embeddings_size(), req.images_size());
  ASSERT_EQ(resp.text_embeddings_size(), req.texts_size());
  for (int i = 0; i < req.images_size(); ++i) {
    EXPECT_LT(max_diff(resp.image_embeddings(i), cases()["images"][i]["image_embeds"]), 1e-4)
        << cases()["images"][i]["file"];
  }
  for (int i = 0; i < req.texts_size(); ++i) {
    EXPECT_LT(max_diff(resp.text_embeddings(i), cases()["texts"][i]["text_embeds"]), 1e-4)
        << cases()["texts"][i]["name"];
  }
  // The golden "long" text has more than 77 tokens: cut to the context, as transformers does.
  ASSERT_EQ(resp.truncated_texts_size(), 1);
  EXPECT_EQ(cases()["texts"][resp.truncated_texts(0)]["name"], "long");
}

TEST_F(ClipE2E, ClassifyIsTheSoftmaxOfTheGoldenLogits) {
  const auto stub = make_stub(server_->address());
  v1::ClassifyRequest req;
  *req.mutable_image() = golden_image(0);
  req.set_template_("{}");  // the label is the whole text: the golden texts
  for (const auto& t : cases()["texts"]) req.add_labels(t["text"].get<std::string>());
  v1::ClassifyResponse resp;
  grpc::ClientContext ctx;
  const grpc::Status s = stub->Classify(&ctx, req, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  const auto logits = cases()["logits_per_image"][0].get<std::vector<double>>();
  ASSERT_EQ(static_cast<size_t>(resp.probabilities_size()), logits.size());
  const double top = *std::max_element(logits.begin(), logits.end());
  double sum = 0;
  for (double l : logits) sum += std::exp(l - top);
  for (size_t i = 0; i < logits.size(); ++i) {
    EXPECT_NEAR(resp.probabilities(static_cast<int>(i)), std::exp(logits[i] - top) / sum, 1e-4)
        << "label " << i;
  }
}

TEST_F(ClipE2E, ModelInfoSaysClipAndIdeficsMethodsAreRefused) {
  const auto stub = make_stub(server_->address());
  const v1::ModelInfo info = model_info(*stub);
  EXPECT_EQ(info.kind(), "clip");
  EXPECT_EQ(info.clip().projection_dim(), 24);
  EXPECT_EQ(info.clip().image_size(), 40);
  EXPECT_EQ(info.clip().context_length(), 77);
  EXPECT_EQ(info.clip().max_labels(), 100);
  const UnaryResult r = call_generate(*stub, generate_request({text_part("hi")}, 2));
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(r.status.error_message().find("kind clip"), std::string::npos)
      << r.status.error_message();
}

grpc::Status classify(v1::Flamingo::Stub& stub, const v1::ClassifyRequest& req) {
  v1::ClassifyResponse resp;
  grpc::ClientContext ctx;
  return stub.Classify(&ctx, req, &resp);
}

grpc::Status embed(v1::Flamingo::Stub& stub, const v1::EmbedRequest& req) {
  v1::EmbedResponse resp;
  grpc::ClientContext ctx;
  return stub.Embed(&ctx, req, &resp);
}

void expect_invalid(const grpc::Status& s, const std::string& field, const std::string& limit) {
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  EXPECT_EQ(s.error_message().rfind(field, 0), 0u) << s.error_message();
  EXPECT_NE(s.error_message().find(limit), std::string::npos) << s.error_message();
}

TEST_F(ClipE2E, BadInputsAreInvalidArgumentNamingFieldAndLimit) {
  const auto stub = make_stub(server_->address());
  v1::ClassifyRequest no_labels;
  *no_labels.mutable_image() = golden_image(0);
  expect_invalid(classify(*stub, no_labels), "labels", "at least one label");

  v1::ClassifyRequest many = no_labels;
  for (int i = 0; i < 10000; ++i) many.add_labels("x");
  expect_invalid(classify(*stub, many), "labels", "--max-labels");

  v1::ClassifyRequest bad_template = no_labels;
  bad_template.add_labels("cat");
  bad_template.set_template_("a photo");
  expect_invalid(classify(*stub, bad_template), "template", "{}");

  v1::EmbedRequest megabyte;
  megabyte.add_texts("ok");
  megabyte.add_texts(std::string(1000000, 'a'));
  expect_invalid(embed(*stub, megabyte), "texts[1]", "--max-embed-text-bytes");
  v1::EmbedRequest too_big;  // 70 texts of 16,000 bytes: 1.12 MB in all
  for (int i = 0; i < 70; ++i) too_big.add_texts(std::string(16000, 'a'));
  expect_invalid(embed(*stub, too_big), "texts", "--max-text-bytes");

  v1::EmbedRequest gif;
  gif.add_texts("ok");
  gif.add_images()->set_data("GIF89a\x01\x00\x01\x00\x00\x00\x00;");
  expect_invalid(embed(*stub, gif), "images[0].data", "PNG");

  v1::EmbedRequest empty;
  expect_invalid(embed(*stub, empty), "images", "at least one image or text");

  v1::EmbedRequest too_many;
  for (int i = 0; i < 257; ++i) too_many.add_texts("x");
  expect_invalid(embed(*stub, too_many), "texts", "--max-embed-texts");
}

TEST_F(ClipE2E, ALongTextIsCutToTheContextAndSaidSo) {
  const auto stub = make_stub(server_->address());
  v1::EmbedRequest req;
  req.add_texts("a green triangle");
  req.add_texts(std::string(10000, 'a'));
  v1::EmbedResponse resp;
  grpc::ClientContext ctx;
  const grpc::Status s = stub->Embed(&ctx, req, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(resp.text_embeddings_size(), 2);
  ASSERT_EQ(resp.truncated_texts_size(), 1);
  EXPECT_EQ(resp.truncated_texts(0), 1);
}

TEST(ClipBesideIdefics, BothKindsAnswerAndWithoutItEmbedIsRefused) {
  const auto server = start_server({"--clip-model", kClip + "/model"});
  const auto stub = make_stub(server->address());
  const v1::ModelInfo info = model_info(*stub);
  EXPECT_EQ(info.kind(), "idefics");
  EXPECT_EQ(info.clip().projection_dim(), 24);
  EXPECT_TRUE(call_generate(*stub, generate_request({text_part("hi")}, 2)).status.ok());
  v1::EmbedRequest req;
  req.add_texts("a green triangle");
  EXPECT_TRUE(embed(*stub, req).ok());
  EXPECT_EQ(stop_server(*server), std::optional<int>(0));

  const auto plain = start_server({});
  const auto plain_stub = make_stub(plain->address());
  const grpc::Status s = embed(*plain_stub, req);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(s.error_message().find("--clip-model"), std::string::npos) << s.error_message();
  EXPECT_EQ(stop_server(*plain), std::optional<int>(0));
}

}  // namespace
}  // namespace flamingo::e2e
