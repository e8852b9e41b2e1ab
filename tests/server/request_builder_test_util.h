// The fixture and helpers of the RequestBuilder tests (request_builder_test.cpp,
// request_builder_score_test.cpp): the golden checkpoint's tokenizer, config and images,
// the builder called through the proto conversion as the gRPC service calls it, and
// expect_invalid (field, limit and values in one line). Header-only, test-only.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/image_decode.h"
#include "model/image_preprocess.h"
#include "model/prompt.h"
#include "server/engine/media_cache.h"
#include "server/proto_requests.h"
#include "server/request_builder.h"
#include "tests/model/spm_oracle.h"

namespace flamingo::testing {

inline const std::string kGolden = FLAMINGO_GOLDEN_DIR;
inline const std::string kModelDir = kGolden + "/model";
using P = PromptItem;

inline std::string read_bytes(const std::string& name) {
  std::ifstream in(kGolden + "/images/" + name, std::ios::binary);
  EXPECT_TRUE(in) << name;
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline const std::string& cat() {
  static const std::string b = read_bytes("cat_face_28x28.png");
  return b;
}
inline const std::string& leaf() {
  static const std::string b = read_bytes("leaf_42x42.png");
  return b;
}
inline const std::string& chair() {
  static const std::string b = read_bytes("chair_baseline_100x80.jpg");
  return b;
}

inline void add_text(v1::GenerateRequest& r, const std::string& s) { r.add_prompt()->set_text(s); }
inline void add_image(v1::GenerateRequest& r, const std::string& bytes) {
  r.add_prompt()->mutable_image()->set_data(bytes);
}
inline void add_text(v1::ScoreRequest& r, const std::string& s) { r.add_prompt()->set_text(s); }
inline void add_image(v1::ScoreRequest& r, const std::string& bytes) {
  r.add_prompt()->mutable_image()->set_data(bytes);
}

// The builder as the gRPC service calls it: flamingo.v1 messages converted by to_input
// (server/proto_requests.h), so every case below also covers the conversion.
class ProtoBuilder {
 public:
  explicit ProtoBuilder(RequestBuilder b) : b_(std::move(b)) {}
  GenerateJob build_generate(const v1::GenerateRequest& r) const {
    return b_.build_generate(to_input(r));
  }
  GenerateJob build_caption(const v1::CaptionRequest& r) const {
    return b_.build_caption(to_input(r));
  }
  GenerateJob build_question(const v1::QuestionRequest& r) const {
    return b_.build_question(to_input(r));
  }
  ScoreJob build_score(const v1::ScoreRequest& r) const { return b_.build_score(to_input(r)); }
  int64_t max_prompt_tokens() const { return b_.max_prompt_tokens(); }

 private:
  RequestBuilder b_;
};

class RequestBuilderTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    tok_ = Tokenizer::load(kModelDir).release();
    config_ = new ModelConfig(load_model_config(kModelDir));
    image_config_ = new ImagePreprocessConfig(
        load_preprocess_config(kModelDir, static_cast<int>(config_->vision.image_size)));
  }
  static void TearDownTestSuite() {
    delete tok_;
    delete config_;
    delete image_config_;
  }

  static int64_t context() { return config_->max_position_embeddings; }

  ProtoBuilder builder(ServerLimits limits = {}, int64_t context_length = 0,
                       int64_t rows = 0) const {
    return ProtoBuilder(
        RequestBuilder(*tok_, *image_config_, limits, context_length ? context_length : context(),
                       rows ? rows : config_->total_vocab(), PromptTemplates::idefics()));
  }

  static std::vector<int32_t> ids(const std::vector<PromptItem>& items) {
    return build_idefics_prompt(*tok_, items).token_ids;
  }

  // The image an engine would get for these bytes, computed without the builder.
  static ImageInput expected_image(const std::string& bytes) {
    const auto* p = reinterpret_cast<const uint8_t*>(bytes.data());
    ImageInput in;
    in.key = media_key(std::span(p, bytes.size()), image_config_->image_size, image_config_->mean,
                       image_config_->std);
    in.pixels = preprocess_image(decode_image(p, bytes.size(), ImageLimits{}, "x"), *image_config_);
    return in;
  }

  static inline Tokenizer* tok_ = nullptr;
  static inline ModelConfig* config_ = nullptr;
  static inline ImagePreprocessConfig* image_config_ = nullptr;
};

// Runs `fn`, expects InvalidRequest for `field`, and every fragment in its one-line message.
template <typename Fn>
void expect_invalid(Fn&& fn, const std::string& field, const std::vector<std::string>& fragments) {
  try {
    fn();
    ADD_FAILURE() << "no InvalidRequest, expected field " << field;
  } catch (const InvalidRequest& e) {
    const std::string msg = e.what();
    EXPECT_EQ(e.field(), field) << msg;
    EXPECT_EQ(msg.rfind(field + ": ", 0), 0u) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    for (const auto& f : fragments) EXPECT_NE(msg.find(f), std::string::npos) << f << " | " << msg;
  }
}

inline v1::GenerateRequest text_request(const std::string& text) {
  v1::GenerateRequest r;
  add_text(r, text);
  return r;
}

}  // namespace flamingo::testing
