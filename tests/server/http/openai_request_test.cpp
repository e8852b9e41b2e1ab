// Tests of server/http/openai_request.h: the JSON shape checks (each a 400 naming the
// parameter), OpenAI's defaults, refused and ignored parameters, data: and file:// image URLs,
// and the mapping of RequestBuilder's field names back to OpenAI's.
#include "server/http/openai_request.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "server/request_builder.h"

namespace flamingo {
namespace {

const MediaPolicy kPolicy;

// "data:image/png;base64," + base64 of "\x89PNG..." (any bytes: the shape is checked here, the
// image itself by RequestBuilder).
const std::string kDataUrl = "data:image/png;base64,iVBORw0KGgo=";

std::string chat(const std::string& extra, const std::string& content = "\"hi\"") {
  return R"({"messages": [{"role": "user", "content": )" + content + "}]" +
         (extra.empty() ? "" : ", " + extra) + "}";
}

void expect_400(const std::string& body, const std::string& param, const std::string& needle = "") {
  try {
    parse_chat_request(body, kPolicy);
    FAIL() << "no error for " << body;
  } catch (const HttpError& e) {
    EXPECT_EQ(e.status(), 400) << e.what();
    EXPECT_EQ(e.param(), param) << e.what();
    EXPECT_EQ(e.type(), "invalid_request_error");
    EXPECT_EQ(std::string(e.what()).rfind(param, 0), 0u) << e.what();
    if (!needle.empty())
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(OpenAIRequest, DefaultsFollowOpenAI) {
  const ChatRequest r = parse_chat_request(chat(""), kPolicy);
  EXPECT_EQ(r.params.sampling.temperature, 1.f);
  EXPECT_EQ(r.params.sampling.top_p, 1.f);
  EXPECT_EQ(r.params.sampling.seed, 0u);
  EXPECT_EQ(r.params.max_tokens, 0);
  EXPECT_EQ(r.params.n, 1);
  EXPECT_FALSE(r.params.stream);
  EXPECT_FALSE(r.params.logprobs);
  ASSERT_EQ(r.messages.size(), 1u);
  EXPECT_EQ(r.messages[0].role, "user");
  ASSERT_EQ(r.messages[0].content.size(), 1u);
  EXPECT_EQ(r.messages[0].content[0].text, "hi");
}

TEST(OpenAIRequest, ReadsEveryParameter) {
  const ChatRequest r = parse_chat_request(
      chat(R"("model": "m", "max_completion_tokens": 9, "max_tokens": 3, "temperature": 0,
            "top_p": 0.5, "seed": 42, "stop": ["a", "b"], "n": 2, "logprobs": true,
            "top_logprobs": 3, "stream": true, "stream_options": {"include_usage": true},
            "top_k": 5, "repetition_penalty": 1.1, "ignore_eos": true, "user": "u",
            "frobnicate": 1, "zzz": null)"),
      kPolicy);
  const OpenAIParams& p = r.params;
  EXPECT_EQ(p.model, "m");
  EXPECT_EQ(p.max_tokens, 9);
  EXPECT_EQ(p.max_tokens_key, "max_completion_tokens");
  EXPECT_EQ(p.sampling.temperature, 0.f);
  EXPECT_EQ(p.sampling.top_p, 0.5f);
  EXPECT_EQ(p.sampling.seed, 42u);
  EXPECT_EQ(p.sampling.top_k, 5);
  EXPECT_FLOAT_EQ(p.sampling.repetition_penalty, 1.1f);
  EXPECT_EQ(p.stop, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(p.n, 2);
  EXPECT_TRUE(p.logprobs);
  EXPECT_EQ(p.top_logprobs, 3);
  EXPECT_TRUE(p.stream);
  EXPECT_TRUE(p.include_usage);
  EXPECT_TRUE(p.ignore_eos);
  EXPECT_EQ(p.ignored, (std::vector<std::string>{"frobnicate", "zzz"}));
  EXPECT_EQ(parse_chat_request(chat(R"("stop": "x")"), kPolicy).params.stop,
            std::vector<std::string>{"x"});
}

TEST(OpenAIRequest, ShapeErrorsNameTheParameter) {
  expect_400("{", "body", "not valid JSON");
  expect_400("8e777", "body",
             "not valid JSON");  // nlohmann's out_of_range, found by fuzz_chat_request
  expect_400(R"({"messages": [], "n": 1e999})", "body", "not valid JSON");
  expect_400("[1]", "body", "JSON object");
  expect_400("{}", "messages", "missing");
  expect_400(R"({"messages": {}})", "messages", "expected an array");
  expect_400(R"({"messages": []})", "messages", "empty");
  expect_400(R"({"messages": [3]})", "messages[0]", "expected an object");
  expect_400(R"({"messages": [{"content": "x"}]})", "messages[0].role");
  expect_400(R"({"messages": [{"role": "user"}]})", "messages[0].content", "missing");
  expect_400(chat("", "[]"), "messages[0].content", "empty list");
  expect_400(chat("", "7"), "messages[0].content", "expected a string or an array");
  expect_400(chat("", R"([{"text": "x"}])"), "messages[0].content[0].type");
  expect_400(chat("", R"([{"type": "input_audio"}])"), "messages[0].content[0].type",
             "input_audio");
  expect_400(chat("", R"([{"type": "text", "text": 5}])"), "messages[0].content[0].text");
  expect_400(chat("", R"([{"type": "image_url", "image_url": {}}])"),
             "messages[0].content[0].image_url");
  expect_400(chat(R"("temperature": "hot")"), "temperature", "expected a number");
  expect_400(chat(R"("max_tokens": 1.5)"), "max_tokens", "expected an integer");
  expect_400(chat(R"("max_tokens": 0)"), "max_tokens", "[1, ");
  expect_400(chat(R"("n": 9)"), "n", "the limit 8 (--max-choices)");
  expect_400(chat(R"("n": 0)"), "n", "[1, ");
  expect_400(chat(R"("stop": 3)"), "stop");
  expect_400(chat(R"("stop": ["a", 3])"), "stop[1]");
  expect_400(chat(R"("stream": "yes")"), "stream", "boolean");
  expect_400(chat(R"("stream_options": {"include_usage": true})"), "stream_options", "stream");
  expect_400(chat(R"("top_logprobs": 2)"), "top_logprobs", "logprobs");
  expect_400(chat(R"("top_p": 0)"), "top_p");
  expect_400(chat(R"("model": 1)"), "model");
}

TEST(OpenAIRequest, RefusesParametersThatChangeTheMeaning) {
  expect_400(chat(R"("tools": [])"), "tools", "not supported");
  expect_400(chat(R"("tool_choice": "auto")"), "tool_choice");
  expect_400(chat(R"("response_format": {"type": "json_object"})"), "response_format");
  expect_400(chat(R"("logit_bias": {"5": 1})"), "logit_bias");
  expect_400(chat(R"("presence_penalty": 0.5)"), "presence_penalty");
  expect_400(chat(R"("frequency_penalty": -1)"), "frequency_penalty");
  // Their neutral values are accepted.
  EXPECT_NO_THROW(parse_chat_request(
      chat(R"("response_format": {"type": "text"}, "logit_bias": {}, "presence_penalty": 0)"),
      kPolicy));
}

TEST(OpenAIRequest, ImagesFromDataUrls) {
  const ChatRequest r = parse_chat_request(
      chat("", R"([{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {"url": ")" +
                   kDataUrl + R"("}}, {"type": "image_url", "image_url": ")" + kDataUrl + R"("}])"),
      kPolicy);
  ASSERT_EQ(r.images.size(), 2u);
  EXPECT_EQ(r.images[0], std::string("\x89PNG\r\n\x1a\n", 8));
  EXPECT_EQ(r.image_paths[0], "messages[0].content[1].image_url");
  EXPECT_EQ(r.image_paths[1], "messages[0].content[2].image_url");
  ASSERT_EQ(r.messages[0].content.size(), 3u);
  EXPECT_EQ(r.messages[0].content[2].image, 1);
}

TEST(OpenAIRequest, DataUrlErrors) {
  const std::string p = "messages[0].content[0].image_url";
  auto body = [](const std::string& url) {
    return chat("", R"([{"type": "image_url", "image_url": {"url": ")" + url + R"("}}])");
  };
  expect_400(body("data:image/png;base64,iVBO*w0K"), p, "invalid base64 at offset 4");
  expect_400(body("data:image/png,abc"), p, "base64");
  expect_400(body("data:text/plain;base64,aGk="), p, "image/");
  expect_400(body("data:image/png;base64"), p, "malformed");
  expect_400(body("data:image/png;base64,"), p, "empty");
  expect_400(body("data:image/png;base64,iVBORw0KG"), p, "truncated");
  expect_400(body("http://example.com/a.png"), p, "--allow-image-urls");
  expect_400(body("ftp://x/a.png"), p, "expected a data:");
  expect_400(body("file:///etc/passwd"), p, "--allowed-local-media-path");
  MediaPolicy small;
  small.max_image_bytes = 4;
  try {
    decode_data_url(kDataUrl, small.max_image_bytes, "x");
    FAIL();
  } catch (const HttpError& e) {
    EXPECT_NE(std::string(e.what()).find("(--max-image-bytes)"), std::string::npos) << e.what();
  }
  EXPECT_EQ(decode_data_url("data:image/jpeg;base64,_-8=", 100, "x"), "\xff\xef");  // URL-safe
}

TEST(OpenAIRequest, FileUrlsOnlyUnderTheAllowedFolder) {
  namespace fs = std::filesystem;
  const fs::path root = fs::temp_directory_path() / ("openai_req_" + std::to_string(getpid()));
  fs::create_directories(root / "in");
  std::ofstream(root / "in" / "a.png") << "PNGBYTES";
  std::ofstream(root / "out.png") << "SECRET";
  MediaPolicy policy;
  policy.allowed_local_media_path = (root / "in").string();
  auto body = [](const fs::path& path) {
    return chat(
        "", R"([{"type": "image_url", "image_url": {"url": "file://)" + path.string() + R"("}}])");
  };
  EXPECT_EQ(parse_chat_request(body(root / "in" / "a.png"), policy).images.at(0), "PNGBYTES");
  for (const fs::path& bad : {root / "out.png", root / "in" / ".." / "out.png", root / "in",
                              root / "in" / "missing.png"}) {
    EXPECT_THROW(parse_chat_request(body(bad), policy), HttpError) << bad;
  }
  fs::create_symlink(root / "out.png", root / "in" / "link.png");
  EXPECT_THROW(parse_chat_request(body(root / "in" / "link.png"), policy), HttpError);
  policy.max_image_bytes = 3;
  EXPECT_THROW(parse_chat_request(body(root / "in" / "a.png"), policy), HttpError);
  fs::remove_all(root);
}

TEST(OpenAIRequest, Completions) {
  const CompletionRequest r =
      parse_completion_request(R"({"prompt": "Once", "logprobs": 2, "max_tokens": 4})", kPolicy);
  EXPECT_EQ(r.prompt, "Once");
  EXPECT_TRUE(r.params.logprobs);
  EXPECT_EQ(r.params.top_logprobs, 2);
  EXPECT_EQ(parse_completion_request(R"({"prompt": ["x"]})", kPolicy).prompt, "x");
  for (const char* bad : {R"({})", R"({"prompt": [1, 2]})", R"({"prompt": ["a", "b"]})",
                          R"({"prompt": "x", "echo": true})", R"({"prompt": "x", "best_of": 2})",
                          R"({"prompt": "x", "suffix": "y"})"}) {
    EXPECT_THROW(parse_completion_request(bad, kPolicy), HttpError) << bad;
  }
}

TEST(OpenAIRequest, BuilderFieldsMapToOpenAIParameters) {
  const std::vector<std::string> paths = {"", "messages[0].content[1].image_url"};
  auto map = [&](const std::string& field) {
    return HttpError::from_invalid(InvalidRequest(field, "detail"), paths, "messages",
                                   "max_completion_tokens");
  };
  EXPECT_EQ(map("max_new_tokens").param(), "max_completion_tokens");
  EXPECT_EQ(std::string(map("max_new_tokens").what()), "max_completion_tokens: detail");
  EXPECT_EQ(map("sampling.top_p").param(), "top_p");
  EXPECT_EQ(map("prompt[1].image").param(), "messages[0].content[1].image_url");
  EXPECT_EQ(map("prompt[1].image.data").param(), "messages[0].content[1].image_url");
  EXPECT_EQ(map("prompt[0].text").param(), "messages");
  EXPECT_EQ(map("prompt").param(), "messages");
  EXPECT_EQ(map("stop[1]").param(), "stop[1]");
  EXPECT_EQ(map("prompt").status(), 400);
}

}  // namespace
}  // namespace flamingo
