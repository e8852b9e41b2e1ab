// POST /v1/embeddings through the real server (issue 14): flamingo-server --model on the golden
// tiny CLIP with the HTTP API on answers OpenAI's embeddings request for texts and, as our
// extension, images given as data URLs, in input order, within 1e-4 of transformers' numbers;
// base64 encoding; long texts listed as truncated; errors name the parameter; chat on a CLIP
// is a 400, /health is ok.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tests/e2e/http_client.h"
#include "tests/e2e/server_e2e_util.h"

namespace flamingo::e2e {
namespace {

using json = nlohmann::json;

const std::string kClip = std::string(FLAMINGO_SOURCE_DIR) + "/tests/golden/clip-tiny";

json golden() {
  std::ifstream in(kClip + "/cases.json");
  return json::parse(in);
}

std::string image_url(const std::string& file) {
  return "data:image/png;base64," + base64(read_file(kClip + "/images/" + file));
}

double max_diff(const json& got, const json& want) {
  EXPECT_EQ(got.size(), want.size());
  double d = 0;
  for (size_t i = 0; i < got.size() && i < want.size(); ++i) {
    d = std::max(d, std::abs(got[i].get<double>() - want[i].get<double>()));
  }
  return d;
}

class HttpEmbeddingsE2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    port_ = free_port();
    server_ = start_server({"--model", kClip + "/model", "--http-port", std::to_string(port_),
                            "--served-model-name", "clip-tiny"})
                  .release();
  }
  static void TearDownTestSuite() {
    if (server_ != nullptr) EXPECT_EQ(stop_server(*server_), std::optional<int>(0));
    delete server_;
  }
  static json post(const json& body, int expect_status) {
    const HttpResponse r = http_post(port_, "/v1/embeddings", body.dump());
    EXPECT_EQ(r.status, expect_status) << r.body;
    return json::parse(r.body, nullptr, false);
  }
  static ServerProcess* server_;
  static int port_;
};
ServerProcess* HttpEmbeddingsE2E::server_ = nullptr;
int HttpEmbeddingsE2E::port_ = 0;

TEST_F(HttpEmbeddingsE2E, TextsAndImagesInInputOrderMatchTransformers) {
  const json g = golden();
  const json body = {
      {"model", "clip-tiny"},
      {"input",
       {g["texts"][0]["text"],
        {{"type", "image_url"}, {"image_url", {{"url", image_url("green_triangle.png")}}}},
        g["texts"][9]["text"] /* the long one */}}};
  const json r = post(body, 200);
  ASSERT_EQ(r["data"].size(), 3u);
  for (size_t k = 0; k < 3; ++k) EXPECT_EQ(r["data"][k]["index"], k);
  EXPECT_LT(max_diff(r["data"][0]["embedding"], g["texts"][0]["text_embeds"]), 1e-4);
  size_t tri = 0;
  while (g["images"][tri]["file"] != "green_triangle.png") ++tri;
  EXPECT_LT(max_diff(r["data"][1]["embedding"], g["images"][tri]["image_embeds"]), 1e-4);
  EXPECT_LT(max_diff(r["data"][2]["embedding"], g["texts"][9]["text_embeds"]), 1e-4);
  EXPECT_EQ(r["truncated"], json::array({"input[2]"}));
  EXPECT_EQ(r["model"], "clip-tiny");
  EXPECT_GT(r["usage"]["prompt_tokens"].get<int>(), 77);

  // base64: the same floats, little-endian float32.
  json b64 = body;
  b64["encoding_format"] = "base64";
  b64["input"] = g["texts"][0]["text"];
  const json e = post(b64, 200);
  std::vector<float> floats;
  for (const auto& v : r["data"][0]["embedding"]) floats.push_back(v.get<float>());
  std::string bytes(floats.size() * 4, '\0');
  std::memcpy(bytes.data(), floats.data(), bytes.size());
  EXPECT_EQ(e["data"][0]["embedding"], base64(bytes));
}

TEST_F(HttpEmbeddingsE2E, ErrorsNameTheParameter) {
  json r = post({{"input", json::array()}}, 400);
  EXPECT_EQ(r["error"]["param"], "input");
  r = post(
      {{"input",
        {"ok",
         {{"type", "image_url"}, {"image_url", {{"url", "data:image/png;base64,R0lGODlh"}}}}}}},
      400);
  EXPECT_EQ(r["error"]["param"], "input[1].data") << r.dump();
  r = post({{"input", {"ok", {1, 2, 3}}}}, 400);
  EXPECT_EQ(r["error"]["param"], "input[1]");
  r = post({{"input", "x"}, {"model", "gpt-4"}}, 404);
  EXPECT_EQ(r["error"]["code"], "model_not_found");
  r = post({{"input", "x"}, {"dimensions", 7}}, 400);
  EXPECT_EQ(r["error"]["param"], "dimensions");
  json many = {{"input", json::array()}};
  for (int i = 0; i < 300; ++i) many["input"].push_back("x");
  r = post(many, 400);
  EXPECT_NE(r["error"]["message"].get<std::string>().find("--max-embed-texts"), std::string::npos);
}

TEST_F(HttpEmbeddingsE2E, ChatOnACLIPIsA400AndHealthIsOk) {
  const HttpResponse chat =
      http_post(port_, "/v1/chat/completions", R"({"messages":[{"role":"user","content":"hi"}]})");
  EXPECT_EQ(chat.status, 400) << chat.body;
  EXPECT_NE(chat.body.find("is a CLIP"), std::string::npos) << chat.body;
  EXPECT_EQ(http_get_request(port_, "/health").status, 200);
}

}  // namespace
}  // namespace flamingo::e2e
