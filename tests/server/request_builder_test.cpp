// Tests for server/request_builder.{h,cpp} (Score in request_builder_score_test.cpp), with the
// golden checkpoint's real tokenizer, config and images. Oracles: build_idefics_prompt over
// hand-written item lists (the issue's IDEFICS caption/VQA layouts), decode_image +
// preprocess_image + media_key called directly. Every validation case checks the field, the
// limit's flag and the values in the message.
#include "server/request_builder.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "tests/server/request_builder_test_util.h"

namespace flamingo {
namespace {

using namespace flamingo::testing;

TEST_F(RequestBuilderTest, GenerateBuildsTokensImagesAndDefaults) {
  v1::GenerateRequest r;
  add_image(r, cat());
  add_text(r, "What is in the picture?");
  add_image(r, chair());
  add_text(r, "And here?");
  r.add_stop("###");
  r.set_top_logprobs(3);
  r.set_ignore_eos(true);
  r.set_request_id("req-7");
  r.mutable_sampling()->set_temperature(0.7f);
  r.mutable_sampling()->set_top_k(5);
  r.mutable_sampling()->set_seed(42);
  const GenerateJob job = builder().build_generate(r);

  const std::vector<PromptItem> items = {P::make_image(), P::make_text("What is in the picture?"),
                                         P::make_image(), P::make_text("And here?")};
  const TokenizedPrompt want = build_idefics_prompt(*tok_, items);
  EXPECT_EQ(job.prompt, want.token_ids);
  EXPECT_EQ(job.image_of_token, want.image_of_token);
  ASSERT_EQ(job.images.size(), 2u);
  EXPECT_EQ(job.images[0].key, expected_image(cat()).key);
  EXPECT_EQ(job.images[0].pixels, expected_image(cat()).pixels);
  EXPECT_EQ(job.images[1].key, expected_image(chair()).key);
  EXPECT_EQ(job.images[1].pixels, expected_image(chair()).pixels);
  EXPECT_EQ(job.images[0].pixels.size(),
            size_t{3} * config_->vision.image_size * config_->vision.image_size);
  EXPECT_EQ(job.max_new_tokens, ServerLimits{}.default_max_new_tokens);
  EXPECT_EQ(job.stop, std::vector<std::string>{"###"});
  EXPECT_EQ(job.top_logprobs, 3);
  EXPECT_TRUE(job.ignore_eos);
  EXPECT_EQ(job.request_id, "req-7");
  EXPECT_EQ(job.sampling.temperature, 0.7f);
  EXPECT_EQ(job.sampling.top_k, 5);
  EXPECT_EQ(job.sampling.top_p, 1.f);               // 0 -> 1
  EXPECT_EQ(job.sampling.repetition_penalty, 1.f);  // 0 -> 1
  EXPECT_EQ(job.sampling.seed, 42u);
}

TEST_F(RequestBuilderTest, TextIsLiteral) {
  const GenerateJob job = builder().build_generate(text_request("a <image> b </s> c <s>"));
  const int32_t image_id = *tok_->token_to_id("<image>");
  EXPECT_EQ(std::count(job.prompt.begin(), job.prompt.end(), image_id), 0);
  EXPECT_EQ(std::count(job.prompt.begin(), job.prompt.end(), tok_->eos_id()), 0);
  EXPECT_EQ(std::count(job.prompt.begin(), job.prompt.end(), tok_->bos_id()), 1);
  EXPECT_TRUE(job.images.empty());
  EXPECT_TRUE(job.request_id.empty());
}

TEST_F(RequestBuilderTest, EqualBytesEqualKeys) {
  v1::GenerateRequest r;
  add_image(r, cat());
  add_image(r, leaf());
  add_image(r, std::string(cat()));  // a copy: same content
  const GenerateJob job = builder().build_generate(r);
  ASSERT_EQ(job.images.size(), 3u);
  EXPECT_EQ(job.images[0].key, job.images[2].key);
  EXPECT_EQ(job.images[0].pixels, job.images[2].pixels);
  EXPECT_NE(job.images[0].key, job.images[1].key);
  EXPECT_EQ(job.images[1].key, expected_image(leaf()).key);
  // A different preprocessing config gives the same bytes another key.
  ImagePreprocessConfig other = *image_config_;
  other.mean[0] += 0.01f;
  ProtoBuilder b2(RequestBuilder(*tok_, other, {}, context(), config_->total_vocab(),
                                 PromptTemplates::idefics()));
  EXPECT_NE(b2.build_generate(r).images[0].key, job.images[0].key);
}

TEST_F(RequestBuilderTest, SeedResolution) {
  const ProtoBuilder b = builder();
  v1::GenerateRequest r = text_request("hi");
  const uint64_t s1 = b.build_generate(r).sampling.seed;
  const uint64_t s2 = b.build_generate(r).sampling.seed;
  EXPECT_NE(s1, 0u);
  EXPECT_NE(s2, 0u);
  EXPECT_NE(s1, s2);  // two 64-bit random draws
  r.mutable_sampling()->set_seed(0xFFFFFFFFFFFFFFFFull);
  EXPECT_EQ(b.build_generate(r).sampling.seed, 0xFFFFFFFFFFFFFFFFull);
  r.mutable_sampling()->set_seed(1);
  EXPECT_EQ(b.build_generate(r).sampling.seed, 1u);
}

TEST_F(RequestBuilderTest, PromptStructureErrors) {
  const ProtoBuilder b = builder();
  expect_invalid([&] { b.build_generate(v1::GenerateRequest{}); }, "prompt", {"empty"});
  v1::GenerateRequest r = text_request("a");
  r.add_prompt();  // neither text nor image
  expect_invalid([&] { b.build_generate(r); }, "prompt[1]", {"neither text nor image"});
  expect_invalid([&] { b.build_generate(text_request("ok \xC3(")); }, "prompt[0].text",
                 {"invalid UTF-8", "byte 3"});
  expect_invalid([&] { b.build_generate(text_request("\xED\xA0\x80")); }, "prompt[0].text",
                 {"invalid UTF-8", "byte 0"});  // a surrogate
  // An empty text part is allowed (IDEFICS keeps it as a text item).
  EXPECT_EQ(b.build_generate(text_request("")).prompt, ids({P::make_text("")}));
}

TEST_F(RequestBuilderTest, TextBytesLimit) {
  ServerLimits limits;
  limits.max_text_bytes = 10;
  const ProtoBuilder b = builder(limits);
  v1::GenerateRequest r = text_request("12345");
  add_text(r, "123456");
  expect_invalid([&] { b.build_generate(r); }, "prompt", {"11", "10", "--max-text-bytes"});
  EXPECT_NO_THROW(b.build_generate(text_request("1234567890")));
}

TEST_F(RequestBuilderTest, PromptTokenLimits) {
  const std::string text = "the quick brown fox jumps over the lazy dog";
  const int64_t n = static_cast<int64_t>(ids({P::make_text(text)}).size());
  ASSERT_GT(n, 5);
  ServerLimits limits;
  limits.max_prompt_tokens = static_cast<int32_t>(n - 1);
  expect_invalid([&] { builder(limits).build_generate(text_request(text)); }, "prompt",
                 {std::to_string(n), std::to_string(n - 1), "--max-prompt-tokens"});
  limits.max_prompt_tokens = static_cast<int32_t>(n);
  EXPECT_NO_THROW(builder(limits).build_generate(text_request(text)));
  // --max-prompt-tokens 0: the context length is the limit.
  expect_invalid([&] { builder({}, n - 1).build_generate(text_request(text)); }, "prompt",
                 {std::to_string(n), std::to_string(n - 1), "context length"});
}

TEST_F(RequestBuilderTest, MaxNewTokens) {
  const std::string text = "hello there";
  const int64_t n = static_cast<int64_t>(ids({P::make_text(text)}).size());
  ServerLimits limits;
  limits.max_new_tokens = 100000;
  const ProtoBuilder b = builder(limits);
  v1::GenerateRequest r = text_request(text);
  r.set_max_new_tokens(static_cast<int32_t>(context() - n));
  EXPECT_EQ(b.build_generate(r).max_new_tokens, context() - n);
  r.set_max_new_tokens(static_cast<int32_t>(context() - n + 1));
  expect_invalid([&] { b.build_generate(r); }, "max_new_tokens",
                 {std::to_string(n), std::to_string(context() - n + 1),
                  std::to_string(context() + 1), "context length " + std::to_string(context())});

  r.set_max_new_tokens(-1);
  expect_invalid([&] { b.build_generate(r); }, "max_new_tokens", {"-1", ">= 0"});
  r.set_max_new_tokens(1025);
  expect_invalid([&] { builder().build_generate(r); }, "max_new_tokens",
                 {"1025", "1024", "--max-new-tokens"});
  r.set_max_new_tokens(1024);
  EXPECT_EQ(builder().build_generate(r).max_new_tokens, 1024);

  // 0 -> the default; when the default does not fit, the message names both.
  r.set_max_new_tokens(0);
  limits.default_max_new_tokens = 7;
  EXPECT_EQ(builder(limits).build_generate(r).max_new_tokens, 7);
  EXPECT_EQ(builder(limits, n + 7).build_generate(r).max_new_tokens, 7);
  expect_invalid([&] { builder(limits, n + 6).build_generate(r); }, "max_new_tokens",
                 {std::to_string(n), "default max_new_tokens 7", "--default-max-new-tokens",
                  "context length " + std::to_string(n + 6)});
}

TEST_F(RequestBuilderTest, ImageCountAndBytes) {
  ServerLimits limits;
  limits.max_images_per_request = 2;
  v1::GenerateRequest r;
  add_image(r, cat());
  add_image(r, cat());
  EXPECT_NO_THROW(builder(limits).build_generate(r));
  add_image(r, cat());
  expect_invalid([&] { builder(limits).build_generate(r); }, "prompt",
                 {"3 images", "limit 2", "--max-images"});

  limits = {};
  limits.max_image_bytes = static_cast<int64_t>(leaf().size()) - 1;
  v1::GenerateRequest r2 = text_request("x");
  add_image(r2, cat());  // small enough
  add_image(r2, leaf());
  expect_invalid(
      [&] { builder(limits).build_generate(r2); }, "prompt[2].image.data",
      {std::to_string(leaf().size()), std::to_string(leaf().size() - 1), "--max-image-bytes"});
}

TEST_F(RequestBuilderTest, ImagePixelsCheckedFromHeader) {
  ServerLimits limits;
  limits.max_image_pixels = 28 * 28 - 1;
  v1::GenerateRequest r;
  add_image(r, cat());
  expect_invalid([&] { builder(limits).build_generate(r); }, "prompt[0].image",
                 {"28x28", "784", std::to_string(28 * 28 - 1), "--max-image-pixels"});
  limits.max_image_pixels = 28 * 28;
  EXPECT_NO_THROW(builder(limits).build_generate(r));

  // A header declaring 100000x100000 with no pixel data: refused on the header alone.
  std::string huge = cat();
  const uint32_t side = 100000;
  for (int k = 0; k < 2; ++k) {
    for (int i = 0; i < 4; ++i)
      huge[16 + 4 * k + i] = static_cast<char>((side >> (24 - 8 * i)) & 0xFF);
  }
  huge.resize(40);
  v1::GenerateRequest r2;
  add_image(r2, huge);
  expect_invalid([&] { builder().build_generate(r2); }, "prompt[0].image",
                 {"100000x100000", "10000000000", "40000000", "--max-image-pixels"});
}

TEST_F(RequestBuilderTest, EmptyAndUndecodableImages) {
  const ProtoBuilder b = builder();
  v1::GenerateRequest r;
  add_image(r, "");
  expect_invalid([&] { b.build_generate(r); }, "prompt[0].image.data", {"empty"});
  v1::GenerateRequest r2 = text_request("x");
  add_image(r2, "hello, not an image");
  expect_invalid([&] { b.build_generate(r2); }, "prompt[1].image.data", {"unknown image format"});

  // Truncated PNG: the header probes fine, decoding fails; decode_image's own text is kept.
  const std::string truncated = cat().substr(0, cat().size() / 2);
  std::string decoder_text;
  try {
    decode_image(reinterpret_cast<const uint8_t*>(truncated.data()), truncated.size(),
                 ImageLimits{}, "SRC");
    FAIL() << "truncated PNG decoded";
  } catch (const Error& e) {
    decoder_text = e.what();
  }
  const std::string tail = decoder_text.substr(decoder_text.find("': ") + 3);
  ASSERT_FALSE(tail.empty());
  v1::GenerateRequest r3;
  add_image(r3, truncated);
  expect_invalid([&] { b.build_generate(r3); }, "prompt[0].image.data", {tail});
}

TEST_F(RequestBuilderTest, Sampling) {
  const ProtoBuilder b = builder();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  auto with = [](auto set) {
    v1::GenerateRequest r = text_request("x");
    set(*r.mutable_sampling());
    return r;
  };
  using S = v1::SamplingParams;
  const struct {
    v1::GenerateRequest request;
    std::string field;
    std::vector<std::string> fragments;
  } cases[] = {
      {with([&](S& s) { s.set_temperature(nan); }), "sampling.temperature", {"nan", "[0, 100]"}},
      {with([&](S& s) { s.set_temperature(inf); }), "sampling.temperature", {"inf"}},
      {with([&](S& s) { s.set_temperature(-0.5f); }), "sampling.temperature", {"-0.5"}},
      {with([&](S& s) { s.set_temperature(100.5f); }), "sampling.temperature", {"100.5"}},
      {with([&](S& s) { s.set_top_p(1.5f); }), "sampling.top_p", {"1.5", "(0, 1]"}},
      {with([&](S& s) { s.set_top_p(-0.25f); }), "sampling.top_p", {"-0.25"}},
      {with([&](S& s) { s.set_top_p(nan); }), "sampling.top_p", {"nan"}},
      {with([&](S& s) { s.set_top_k(-2); }), "sampling.top_k", {"-2", ">= 0"}},
      {with([&](S& s) { s.set_repetition_penalty(-1.f); }),
       "sampling.repetition_penalty",
       {"-1", "(0, 100]"}},
      {with([&](S& s) { s.set_repetition_penalty(-inf); }),
       "sampling.repetition_penalty",
       {"-inf"}},
      {with([&](S& s) { s.set_repetition_penalty(250.f); }),
       "sampling.repetition_penalty",
       {"250"}},
  };
  for (const auto& c : cases)
    expect_invalid([&] { b.build_generate(c.request); }, c.field, c.fragments);

  const GenerateJob ok = b.build_generate(with([](S& s) {
    s.set_temperature(100.f);
    s.set_top_p(0.25f);
    s.set_top_k(1000000);
    s.set_repetition_penalty(1.5f);
  }));
  EXPECT_EQ(ok.sampling.temperature, 100.f);
  EXPECT_EQ(ok.sampling.top_p, 0.25f);
  EXPECT_EQ(ok.sampling.top_k, 1000000);
  EXPECT_EQ(ok.sampling.repetition_penalty, 1.5f);
  EXPECT_NO_THROW(ok.sampling.validate());
}

TEST_F(RequestBuilderTest, StopStrings) {
  const ProtoBuilder b = builder();
  v1::GenerateRequest r = text_request("x");
  for (int i = 0; i < 8; ++i) r.add_stop("s" + std::to_string(i));
  EXPECT_EQ(b.build_generate(r).stop.size(), 8u);
  r.add_stop("s8");
  expect_invalid([&] { b.build_generate(r); }, "stop", {"9", "limit 8", "--max-stop-strings"});

  v1::GenerateRequest r2 = text_request("x");
  r2.add_stop("a");
  r2.add_stop("");
  expect_invalid([&] { b.build_generate(r2); }, "stop[1]", {"empty"});

  v1::GenerateRequest r3 = text_request("x");
  r3.add_stop(std::string(256, 'a'));
  EXPECT_NO_THROW(b.build_generate(r3));
  r3.add_stop(std::string(257, 'b'));
  expect_invalid([&] { b.build_generate(r3); }, "stop[1]",
                 {"257", "256", "--max-stop-string-bytes"});

  v1::GenerateRequest r4 = text_request("x");
  r4.add_stop("\xFF");
  expect_invalid([&] { b.build_generate(r4); }, "stop[0]", {"invalid UTF-8"});
}

TEST_F(RequestBuilderTest, TopLogprobsAndRequestId) {
  const ProtoBuilder b = builder();
  v1::GenerateRequest r = text_request("x");
  r.set_top_logprobs(-1);
  expect_invalid([&] { b.build_generate(r); }, "top_logprobs", {"-1"});
  r.set_top_logprobs(21);
  expect_invalid([&] { b.build_generate(r); }, "top_logprobs", {"21", "20", "--max-top-logprobs"});
  r.set_top_logprobs(20);
  EXPECT_EQ(b.build_generate(r).top_logprobs, 20);

  r.set_request_id(std::string(257, 'x'));
  expect_invalid([&] { b.build_generate(r); }, "request_id", {"257", "256"});
  r.set_request_id("a\nb");
  expect_invalid([&] { b.build_generate(r); }, "request_id", {"control character", "byte 1"});
}

TEST_F(RequestBuilderTest, TokenWithoutEmbeddingRow) {
  // 401 rows: the "<image>" token (id 401) has none.
  const int32_t image_id = *tok_->token_to_id("<image>");
  ASSERT_EQ(image_id, config_->total_vocab() - 1);
  v1::GenerateRequest r;
  add_image(r, cat());
  expect_invalid([&] { builder({}, 0, image_id).build_generate(r); }, "prompt",
                 {"<image>", std::to_string(image_id), std::to_string(image_id) + " rows"});
  EXPECT_NO_THROW(builder({}, 0, image_id).build_generate(text_request("text only")));
}

TEST_F(RequestBuilderTest, CaptionFollowsTemplate) {
  v1::CaptionRequest r;
  auto* e0 = r.add_examples();
  e0->mutable_image()->set_data(cat());
  e0->set_text("a cat");
  auto* e1 = r.add_examples();
  e1->mutable_image()->set_data(leaf());
  e1->set_text("a green leaf");
  r.mutable_image()->set_data(chair());
  r.set_max_new_tokens(5);
  r.mutable_sampling()->set_seed(9);
  const GenerateJob job = builder().build_caption(r);
  const TokenizedPrompt want = build_idefics_prompt(
      *tok_, {P::make_image(), P::make_text("Caption: a cat\n"), P::make_image(),
              P::make_text("Caption: a green leaf\n"), P::make_image(), P::make_text("Caption:")});
  EXPECT_EQ(job.prompt, want.token_ids);
  EXPECT_EQ(job.image_of_token, want.image_of_token);
  ASSERT_EQ(job.images.size(), 3u);
  EXPECT_EQ(job.images[0].key, expected_image(cat()).key);
  EXPECT_EQ(job.images[1].key, expected_image(leaf()).key);
  EXPECT_EQ(job.images[2].key, expected_image(chair()).key);
  EXPECT_EQ(job.stop, std::vector<std::string>{"\n"});
  EXPECT_EQ(job.max_new_tokens, 5);
  EXPECT_EQ(job.sampling.seed, 9u);

  // Zero-shot.
  v1::CaptionRequest z;
  z.mutable_image()->set_data(cat());
  EXPECT_EQ(builder().build_caption(z).prompt, ids({P::make_image(), P::make_text("Caption:")}));
}

TEST_F(RequestBuilderTest, QuestionFollowsTemplate) {
  v1::QuestionRequest r;
  auto* e0 = r.add_examples();
  e0->mutable_image()->set_data(leaf());
  e0->set_question("What color is it?");
  e0->set_answer("green");
  r.mutable_image()->set_data(cat());
  r.set_question("What animal is this?");
  const GenerateJob job = builder().build_question(r);
  const TokenizedPrompt want = build_idefics_prompt(
      *tok_, {P::make_image(), P::make_text("Question: What color is it? Answer: green\n"),
              P::make_image(), P::make_text("Question: What animal is this? Answer:")});
  EXPECT_EQ(job.prompt, want.token_ids);
  EXPECT_EQ(job.image_of_token, want.image_of_token);
  ASSERT_EQ(job.images.size(), 2u);
  EXPECT_EQ(job.images[0].key, expected_image(leaf()).key);
  EXPECT_EQ(job.images[1].key, expected_image(cat()).key);
  EXPECT_EQ(job.stop, std::vector<std::string>{"\n"});
  EXPECT_EQ(job.max_new_tokens, ServerLimits{}.default_max_new_tokens);
}

TEST_F(RequestBuilderTest, TemplatesNeverAddEndOfUtterance) {
  // With a tokenizer that lists <end_of_utterance>, consecutive text items get one between
  // them; the rendered templates must produce none.
  const std::string dir =
      testing::make_tokenizer_variant(kModelDir, "rb_eou", [](auto& config, auto&, auto&) {
        config["additional_special_tokens"].push_back("<end_of_utterance>");
      });
  const auto tok = Tokenizer::load(dir);
  const int32_t eou = *tok->end_of_utterance_id();
  // Sanity: the layout does insert it between two text items.
  const auto split =
      build_idefics_prompt(*tok, {P::make_text("Question: q"), P::make_text("Answer:")});
  EXPECT_EQ(std::count(split.token_ids.begin(), split.token_ids.end(), eou), 1);

  const ProtoBuilder b(
      RequestBuilder(*tok, *image_config_, {}, context(), tok->size(), PromptTemplates::idefics()));
  v1::QuestionRequest q;
  auto* e = q.add_examples();
  e->mutable_image()->set_data(leaf());
  e->set_question("q1");
  e->set_answer("a1");
  q.mutable_image()->set_data(cat());
  q.set_question("q2");
  const auto qa = b.build_question(q).prompt;
  EXPECT_EQ(std::count(qa.begin(), qa.end(), eou), 0);
  v1::CaptionRequest c;
  auto* ce = c.add_examples();
  ce->mutable_image()->set_data(leaf());
  ce->set_text("a leaf");
  c.mutable_image()->set_data(cat());
  const auto cap = b.build_caption(c).prompt;
  EXPECT_EQ(std::count(cap.begin(), cap.end(), eou), 0);
}

TEST_F(RequestBuilderTest, CaptionAndQuestionErrors) {
  const ProtoBuilder b = builder();
  v1::CaptionRequest c;
  expect_invalid([&] { b.build_caption(c); }, "image", {"missing"});
  c.mutable_image();  // present, no bytes
  expect_invalid([&] { b.build_caption(c); }, "image.data", {"empty"});
  c.mutable_image()->set_data(cat());
  auto* e0 = c.add_examples();
  e0->mutable_image()->set_data(leaf());
  e0->set_text("leaf");
  auto* e1 = c.add_examples();
  e1->set_text("no image");
  expect_invalid([&] { b.build_caption(c); }, "examples[1].image", {"missing"});
  e1->mutable_image()->set_data("junk");
  expect_invalid([&] { b.build_caption(c); }, "examples[1].image.data", {"unknown image format"});
  e1->mutable_image()->set_data(chair());
  e1->set_text("");
  expect_invalid([&] { b.build_caption(c); }, "examples[1].text", {"empty"});
  e1->set_text("chair");
  EXPECT_NO_THROW(b.build_caption(c));
  ServerLimits limits;
  limits.max_images_per_request = 2;
  expect_invalid([&] { builder(limits).build_caption(c); }, "examples",
                 {"3 images", "2 examples", "limit 2", "--max-images"});
  c.set_max_new_tokens(-3);
  expect_invalid([&] { b.build_caption(c); }, "max_new_tokens", {"-3"});
  c.set_max_new_tokens(1);
  c.mutable_sampling()->set_top_p(2.f);
  expect_invalid([&] { b.build_caption(c); }, "sampling.top_p", {"2"});

  v1::QuestionRequest q;
  q.mutable_image()->set_data(cat());
  expect_invalid([&] { b.build_question(q); }, "question", {"empty"});
  q.set_question("what?");
  EXPECT_NO_THROW(b.build_question(q));
  auto* qe = q.add_examples();
  qe->mutable_image()->set_data(leaf());
  qe->set_answer("green");
  expect_invalid([&] { b.build_question(q); }, "examples[0].question", {"empty"});
  qe->set_question("color?");
  qe->set_answer("");
  expect_invalid([&] { b.build_question(q); }, "examples[0].answer", {"empty"});
  qe->set_answer("green");
  limits = {};
  limits.max_text_bytes = 10;
  expect_invalid(
      [&] { builder(limits).build_question(q); }, "question + examples",
      {std::to_string(std::string("what?color?green").size()), "10", "--max-text-bytes"});
  v1::QuestionRequest q2;
  q2.set_question("x");
  expect_invalid([&] { b.build_question(q2); }, "image", {"missing"});
}

TEST_F(RequestBuilderTest, CaptionPromptTokensOverContext) {
  v1::CaptionRequest c;
  c.mutable_image()->set_data(cat());
  const int64_t n = static_cast<int64_t>(ids({P::make_image(), P::make_text("Caption:")}).size());
  expect_invalid([&] { builder({}, n - 1).build_caption(c); }, "examples",
                 {std::to_string(n), std::to_string(n - 1)});
  ServerLimits limits;
  limits.default_max_new_tokens = 3;
  EXPECT_EQ(builder(limits, n + 3).build_caption(c).max_new_tokens, 3);
  expect_invalid([&] { builder(limits, n + 2).build_caption(c); }, "max_new_tokens",
                 {std::to_string(n), "3", std::to_string(n + 2)});
}

}  // namespace
}  // namespace flamingo
