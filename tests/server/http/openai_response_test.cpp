// Tests of server/http/openai_response.h: OpenAI's response and chunk layouts, logprobs in the
// chat and legacy layouts, token texts (sentencepiece's "▁" as a space, byte pieces as bytes),
// usage and errors. Uses the golden tiny tokenizer.
#include "server/http/openai_response.h"

#include <gtest/gtest.h>

#include "model/tokenizer.h"
#include "server/http/openai_request.h"

namespace flamingo {
namespace {

using nlohmann::json;

const Tokenizer& tok() {
  static const std::unique_ptr<Tokenizer> t =
      Tokenizer::load(std::string(FLAMINGO_GOLDEN_DIR) + "/model");
  return *t;
}

// The id of the first sentencepiece piece that starts with "▁" and the id of "<0x0A>".
int32_t space_piece() {
  for (int32_t id = 0; id < tok().sp_size(); ++id) {
    const std::string p = tok().id_to_piece(id);
    if (p.size() > 3 && p.rfind("\xE2\x96\x81", 0) == 0) return id;
  }
  return -1;
}

TEST(OpenAIResponse, TokenText) {
  const int32_t id = space_piece();
  ASSERT_GE(id, 0);
  const TokenText t = token_text(tok(), id);
  EXPECT_EQ(t.text, " " + tok().id_to_piece(id).substr(3));
  EXPECT_EQ(t.bytes.size(), t.text.size());
  EXPECT_EQ(t.bytes[0], ' ');
  // An id without a token (a padded vocabulary's row, among top_logprobs): empty, no throw.
  EXPECT_EQ(token_text(tok(), 500).text, "");
  EXPECT_TRUE(token_text(tok(), 500).bytes.empty());
  if (const auto nl = tok().token_to_id("<0x0A>")) {
    EXPECT_EQ(token_text(tok(), *nl).text, "\n");
    EXPECT_EQ(token_text(tok(), *nl).bytes, std::vector<int>{10});
  }
}

TEST(OpenAIResponse, ChatCompletion) {
  ChoiceResult c;
  c.text = "a cat";
  c.token_ids = {space_piece(), space_piece()};
  c.logprobs = {-0.5f, -1.5f};
  c.top_logprobs = {{{space_piece(), -0.5}, {5, -2.0}}, {{space_piece(), -1.5}}};
  c.status = JobStatus::kStop;
  c.prompt_tokens = 10;
  c.completion_tokens = 2;
  c.cached_prompt_tokens = 4;
  ChoiceResult d = c;
  d.status = JobStatus::kLength;
  const ResponseHeader h{"chatcmpl-1", 123, "m"};
  const json j = completion_json(ApiKind::kChat, h, {c, d}, tok(), true, true);
  EXPECT_EQ(j["id"], "chatcmpl-1");
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["created"], 123);
  EXPECT_EQ(j["model"], "m");
  ASSERT_EQ(j["choices"].size(), 2u);
  EXPECT_EQ(j["choices"][0]["index"], 0);
  EXPECT_EQ(j["choices"][1]["index"], 1);
  EXPECT_EQ(j["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(j["choices"][0]["message"]["content"], "a cat");
  EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(j["choices"][1]["finish_reason"], "length");
  const json& lp = j["choices"][0]["logprobs"]["content"];
  ASSERT_EQ(lp.size(), 2u);
  EXPECT_FLOAT_EQ(lp[0]["logprob"].get<float>(), -0.5f);
  EXPECT_EQ(lp[0]["top_logprobs"].size(), 2u);
  EXPECT_EQ(lp[1]["top_logprobs"].size(), 1u);
  EXPECT_TRUE(lp[0]["bytes"].is_array());
  EXPECT_EQ(j["usage"]["prompt_tokens"], 10);
  EXPECT_EQ(j["usage"]["completion_tokens"], 4);
  EXPECT_EQ(j["usage"]["total_tokens"], 14);
  EXPECT_EQ(j["usage"]["prompt_tokens_details"]["cached_tokens"], 4);
  const json no_lp = completion_json(ApiKind::kChat, h, {c}, tok(), false, false);
  EXPECT_TRUE(no_lp["choices"][0]["logprobs"].is_null());
}

TEST(OpenAIResponse, LegacyCompletionLogprobs) {
  ChoiceResult c;
  c.text = "x";
  c.token_ids = {space_piece()};
  c.logprobs = {-0.25f};
  c.top_logprobs = {{{space_piece(), -0.25}}};
  c.status = JobStatus::kLength;
  const json j = completion_json(ApiKind::kCompletion, {"cmpl-1", 1, "m"}, {c}, tok(), true, true);
  EXPECT_EQ(j["object"], "text_completion");
  EXPECT_EQ(j["choices"][0]["text"], "x");
  const json& lp = j["choices"][0]["logprobs"];
  EXPECT_EQ(lp["tokens"].size(), 1u);
  EXPECT_FLOAT_EQ(lp["token_logprobs"][0].get<float>(), -0.25f);
  EXPECT_EQ(lp["top_logprobs"][0].size(), 1u);
}

TEST(OpenAIResponse, Chunks) {
  const ResponseHeader h{"chatcmpl-2", 5, "m"};
  const json first = chunk_json(ApiKind::kChat, h, 1, "", true, nullptr, nullptr, true);
  EXPECT_EQ(first["object"], "chat.completion.chunk");
  EXPECT_EQ(first["choices"][0]["index"], 1);
  EXPECT_EQ(first["choices"][0]["delta"], (json{{"role", "assistant"}, {"content", ""}}));
  EXPECT_TRUE(first["choices"][0]["finish_reason"].is_null());
  EXPECT_TRUE(first.contains("usage") && first["usage"].is_null());
  const json text = chunk_json(ApiKind::kChat, h, 0, "hi", false, nullptr, nullptr, false);
  EXPECT_EQ(text["choices"][0]["delta"], (json{{"content", "hi"}}));
  EXPECT_FALSE(text.contains("usage"));
  const std::string stop = "stop";
  const json last = chunk_json(ApiKind::kChat, h, 0, "", false, &stop, nullptr, false);
  EXPECT_EQ(last["choices"][0]["delta"], json::object());
  EXPECT_EQ(last["choices"][0]["finish_reason"], "stop");
  const json usage = usage_chunk_json(ApiKind::kChat, h, usage_json(3, 4, 0));
  EXPECT_EQ(usage["choices"], json::array());
  EXPECT_EQ(usage["usage"]["total_tokens"], 7);
  const json legacy = chunk_json(ApiKind::kCompletion, h, 0, "t", false, nullptr, nullptr, false);
  EXPECT_EQ(legacy["object"], "text_completion");
  EXPECT_EQ(legacy["choices"][0]["text"], "t");
}

TEST(OpenAIResponse, ErrorsAndInvalidUtf8) {
  const json e = error_json(HttpError(400, "top_p: bad", "top_p"));
  EXPECT_EQ(e["error"]["message"], "top_p: bad");
  EXPECT_EQ(e["error"]["type"], "invalid_request_error");
  EXPECT_EQ(e["error"]["param"], "top_p");
  EXPECT_TRUE(e["error"]["code"].is_null());
  EXPECT_EQ(error_json(HttpError(429, "full"))["error"]["type"], "rate_limit_error");
  EXPECT_TRUE(error_json(HttpError(503, "x"))["error"]["param"].is_null());
  EXPECT_EQ(dump(json("a\xff")), "\"a\xEF\xBF\xBD\"");
  EXPECT_EQ(openai_finish_reason(JobStatus::kCancelled), std::nullopt);
}

}  // namespace
}  // namespace flamingo
