// End-to-end tests of the OpenAI-compatible HTTP API (ctest label e2e): a real flamingo-server
// on loopback ports, called with raw HTTP/1.1 (tests/e2e/http_client.h). Chat == gRPC (the same
// prompt, seed and sampling give the same text and logprobs through both front ends), streaming
// against non-streaming, n choices, client aborts freeing the KV cache, and the error statuses
// 400/404/413/429/503 in OpenAI's shape. The official SDK's view: tests/clients/openai_sdk.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>

#include "server/http/httplib_config.h"
#include "tests/e2e/http_client.h"
#include "tests/e2e/server_e2e_util.h"

namespace flamingo::e2e {
namespace {

using json = nlohmann::json;

std::string data_url(const std::string& file, const std::string& type) {
  return "data:image/" + type + ";base64," + base64(image_bytes(file));
}

// A server with the HTTP API on a free port (retried: the port may be taken meanwhile).
struct HttpServer {
  std::unique_ptr<ServerProcess> process;
  int http_port = 0;
};

HttpServer start_http_server(std::vector<std::string> args, bool wait_ready = true) {
  for (int attempt = 0;; ++attempt) {
    HttpServer s;
    s.http_port = free_port();
    std::vector<std::string> all = {"--http-port", std::to_string(s.http_port)};
    all.insert(all.end(), args.begin(), args.end());
    try {
      s.process = start_server(all, wait_ready);
      if (!s.process->wait_for_log("http listening on", Ms(30000))) {
        throw std::runtime_error("no 'http listening' line: " + s.process->describe());
      }
      return s;
    } catch (const std::exception&) {
      if (attempt == 2) throw;
    }
  }
}

HttpServer& shared_server() {
  // Long requests below must outlast a few round trips: the tiny model decodes 1000 tokens in
  // well under a second, so they may run to 8000.
  static HttpServer s = start_http_server({"--context-length", "8192", "--max-new-tokens", "8000"});
  return s;
}

class SharedServerEnvironment : public ::testing::Environment {
 public:
  void TearDown() override {
    HttpServer& s = shared_server();
    if (!s.process) return;
    EXPECT_EQ(stop_server(*s.process), std::optional<int>(0)) << s.process->describe();
    s.process.reset();
  }
};
[[maybe_unused]] ::testing::Environment* const kEnv =
    ::testing::AddGlobalTestEnvironment(new SharedServerEnvironment);

class HttpE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    port_ = shared_server().http_port;
    stub_ = make_stub(shared_server().process->address());
  }
  void TearDown() override {
    if (HasFailure() || verbose()) {
      std::cerr << "server log: " << shared_server().process->describe(4000) << "\n";
    }
  }
  json post_json(const std::string& path, const json& body, int want_status = 200) {
    const HttpResponse r = http_post(port_, path, body.dump());
    EXPECT_EQ(r.status, want_status) << r.body;
    EXPECT_EQ(r.headers.at("content-type").rfind("application/json", 0), 0u);
    return json::parse(r.body);
  }
  int port_ = 0;
  std::unique_ptr<v1::Flamingo::Stub> stub_;
};

json user_chat(const json& content, int max_tokens, json extra = json::object()) {
  json body = {{"model", "idefics-tiny-random"},
               {"messages", json::array({{{"role", "user"}, {"content", content}}})},
               {"max_tokens", max_tokens}};
  body.update(extra);
  return body;
}

TEST_F(HttpE2E, ModelsHealthAndATextChat) {
  const HttpResponse models = http_get_request(port_, "/v1/models");
  ASSERT_EQ(models.status, 200);
  const json m = json::parse(models.body);
  EXPECT_EQ(m["object"], "list");
  ASSERT_EQ(m["data"].size(), 1u);
  EXPECT_EQ(m["data"][0]["id"], "idefics-tiny-random");
  EXPECT_EQ(http_get_request(port_, "/health").status, 200);

  const json r = post_json("/v1/chat/completions", user_chat("Hello there", 5, {{"seed", 3}}));
  EXPECT_EQ(r["object"], "chat.completion");
  EXPECT_EQ(r["id"].get<std::string>().rfind("chatcmpl-", 0), 0u);
  EXPECT_EQ(r["model"], "idefics-tiny-random");
  ASSERT_EQ(r["choices"].size(), 1u);
  EXPECT_EQ(r["choices"][0]["message"]["role"], "assistant");
  EXPECT_TRUE(r["choices"][0]["message"]["content"].is_string());
  EXPECT_TRUE(r["choices"][0]["finish_reason"] == "stop" ||
              r["choices"][0]["finish_reason"] == "length");
  const json& u = r["usage"];
  EXPECT_GT(u["prompt_tokens"].get<int>(), 3);
  EXPECT_GE(u["completion_tokens"].get<int>(), 1);
  EXPECT_LE(u["completion_tokens"].get<int>(), 5);
  EXPECT_EQ(u["total_tokens"], u["prompt_tokens"].get<int>() + u["completion_tokens"].get<int>());
}

// The chat template of the tiny model (no <end_of_utterance> token: spelled as text) turned
// into gRPC parts by hand: both front ends must produce the same tokens.
TEST_F(HttpE2E, ChatEqualsGrpcWithTheSameSeed) {
  const std::string png = image_bytes("cat_face_28x28.png");
  for (const float temperature : {0.f, 0.9f}) {
    const json content = json::array(
        {{{"type", "text"}, {"text", "What is this?"}},
         {{"type", "image_url"}, {"image_url", {{"url", data_url("cat_face_28x28.png", "png")}}}}});
    const json r = post_json(
        "/v1/chat/completions",
        user_chat(
            content, 12,
            {{"temperature", temperature}, {"seed", 77}, {"logprobs", true}, {"top_p", 0.95}}));
    v1::GenerateRequest g = generate_request({text_part("User: What is this?"), image_part(png),
                                              text_part("<end_of_utterance>\nAssistant:")},
                                             12);
    g.mutable_sampling()->set_temperature(temperature);
    g.mutable_sampling()->set_seed(77);
    g.mutable_sampling()->set_top_p(0.95f);
    g.add_stop("<end_of_utterance>");
    g.add_stop("\nUser:");
    const UnaryResult want = call_generate(*stub_, g);
    ASSERT_TRUE(want.status.ok()) << want.status.error_message();
    EXPECT_EQ(r["choices"][0]["message"]["content"], want.response.text()) << temperature;
    EXPECT_EQ(r["usage"]["prompt_tokens"], want.response.usage().prompt_tokens());
    const json& lp = r["choices"][0]["logprobs"]["content"];
    ASSERT_EQ(lp.size(), static_cast<size_t>(want.response.logprobs_size()));
    for (size_t i = 0; i < lp.size(); ++i) {
      EXPECT_EQ(lp[i]["logprob"].get<float>(), want.response.logprobs(static_cast<int>(i))) << i;
    }
  }
}

TEST_F(HttpE2E, StreamingMatchesNonStreamingWithUsage) {
  const json extra = {{"temperature", 0.8}, {"seed", 11}};
  const json whole = post_json("/v1/chat/completions", user_chat("Tell me a story", 16, extra));
  json stream_extra = extra;
  stream_extra["stream"] = true;
  stream_extra["stream_options"] = {{"include_usage", true}};
  const HttpResponse r = http_post(port_, "/v1/chat/completions",
                                   user_chat("Tell me a story", 16, stream_extra).dump());
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.headers.at("content-type"), "text/event-stream");
  const std::vector<std::string> events = r.events();
  ASSERT_GE(events.size(), 4u) << r.body;
  EXPECT_EQ(events.back(), "[DONE]");
  std::string text;
  std::string finish;
  for (size_t i = 0; i + 1 < events.size(); ++i) {
    const json c = json::parse(events[i]);
    EXPECT_EQ(c["object"], "chat.completion.chunk");
    EXPECT_EQ(c["id"], events.size() > 1 ? json::parse(events[0])["id"] : c["id"]);
    if (i == 0) {
      EXPECT_EQ(c["choices"][0]["delta"]["role"], "assistant");
    }
    if (i + 2 == events.size()) {  // the usage chunk
      EXPECT_TRUE(c["choices"].empty());
      for (const char* k : {"prompt_tokens", "completion_tokens", "total_tokens"}) {
        EXPECT_EQ(c["usage"][k], whole["usage"][k]) << k;
      }
      // The second run finds the prompt in the prefix cache.
      EXPECT_GT(c["usage"]["prompt_tokens_details"]["cached_tokens"].get<int>(), 0);
      continue;
    }
    EXPECT_TRUE(c["usage"].is_null());
    ASSERT_EQ(c["choices"].size(), 1u);
    const json& ch = c["choices"][0];
    if (ch["delta"].contains("content")) text += ch["delta"]["content"].get<std::string>();
    if (!ch["finish_reason"].is_null()) finish = ch["finish_reason"];
    EXPECT_TRUE(valid_utf8(events[i]));
  }
  EXPECT_EQ(text, whole["choices"][0]["message"]["content"]);
  EXPECT_EQ(finish, whole["choices"][0]["finish_reason"]);
}

TEST_F(HttpE2E, SeveralChoicesAndTheCompletionsEndpoint) {
  const json r = post_json("/v1/chat/completions",
                           user_chat("Hi", 6, {{"n", 3}, {"seed", 5}, {"temperature", 1.0}}));
  ASSERT_EQ(r["choices"].size(), 3u);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(r["choices"][i]["index"], i);
  // Choices 1 and 2 start after choice 0 computed the prompt: they find it in the prefix cache.
  EXPECT_GT(r["usage"]["prompt_tokens_details"]["cached_tokens"].get<int>(), 0) << r.dump();
  // Choice i samples with seed + i: choice 1 of seed 5 is choice 0 of seed 6.
  const json r6 =
      post_json("/v1/chat/completions", user_chat("Hi", 6, {{"seed", 6}, {"temperature", 1.0}}));
  EXPECT_EQ(r["choices"][1]["message"]["content"], r6["choices"][0]["message"]["content"]);

  const json c = post_json(
      "/v1/completions",
      {{"prompt", "Once upon a time"}, {"max_tokens", 4}, {"temperature", 0}, {"logprobs", 2}});
  EXPECT_EQ(c["object"], "text_completion");
  EXPECT_TRUE(c["choices"][0]["text"].is_string());
  EXPECT_EQ(c["choices"][0]["logprobs"]["tokens"].size(),
            c["usage"]["completion_tokens"].get<size_t>());
  const v1::GenerateRequest g = generate_request({text_part("Once upon a time")}, 4);
  const UnaryResult want = call_generate(*stub_, g);
  ASSERT_TRUE(want.status.ok());
  EXPECT_EQ(c["choices"][0]["text"], want.response.text());
}

TEST_F(HttpE2E, ClientAbortFreesTheKvCache) {
  const json body = user_chat("Tell me a very long story", 8000,
                              {{"stream", true}, {"ignore_eos", true}, {"temperature", 0}});
  // The role chunk and one more event, then the client goes away.
  const std::string got = http_read_until(
      port_, post_request("/v1/chat/completions", body.dump()), [](const std::string& s) {
        const size_t first = s.find("data: ");
        return first != std::string::npos && s.find("data: ", first + 1) != std::string::npos;
      });
  ASSERT_NE(got.find("data: "), std::string::npos) << got;
  const v1::ModelInfo idle = wait_kv_idle(*stub_, Ms(5000));
  EXPECT_EQ(idle.kv_blocks_free(), idle.kv_blocks_total()) << "the aborted stream still holds KV";

  // A non-streaming request whose client goes away before the answer.
  const json long_body = user_chat("Another long story", 8000, {{"ignore_eos", true}});
  const int fd = http_connect(port_);
  ASSERT_TRUE(send_all(fd, post_request("/v1/chat/completions", long_body.dump())));
  std::this_thread::sleep_for(Ms(300));
  const v1::ModelInfo busy = model_info(*stub_);
  EXPECT_LT(busy.kv_blocks_free(), busy.kv_blocks_total()) << "the request should be running";
  close(fd);
  const v1::ModelInfo after = wait_kv_idle(*stub_, Ms(5000));
  EXPECT_EQ(after.kv_blocks_free(), after.kv_blocks_total()) << "the abandoned request still runs";
  const std::string text = http_get_request(port_, "/metrics").body;
  EXPECT_NE(text.find("flamingo_requests_total{rpc=\"chat.completions\",outcome=\"cancelled\",api="
                      "\"openai\"} 2"),
            std::string::npos)
      << text;
  // The server still answers.
  post_json("/v1/chat/completions", user_chat("Still there?", 2));
}

void expect_error(const HttpResponse& r, int status, const std::string& param,
                  const std::string& needle) {
  EXPECT_EQ(r.status, status) << r.body;
  const json e = json::parse(r.body);
  ASSERT_TRUE(e.contains("error")) << r.body;
  EXPECT_TRUE(e["error"]["message"].is_string());
  EXPECT_TRUE(e["error"]["type"].is_string());
  if (param.empty()) {
    EXPECT_TRUE(e["error"]["param"].is_null()) << r.body;
  } else {
    EXPECT_EQ(e["error"]["param"], param) << r.body;
  }
  EXPECT_NE(e["error"]["message"].get<std::string>().find(needle), std::string::npos) << r.body;
}

TEST_F(HttpE2E, BadRequestsAnswer400NamingTheField) {
  const std::string path = "/v1/chat/completions";
  expect_error(http_post(port_, path, "{\"messages\": ["), 400, "body", "not valid JSON");
  expect_error(http_post(port_, path, "{}"), 400, "messages", "missing");
  expect_error(http_post(port_, path, user_chat(json::array(), 2).dump()), 400,
               "messages[0].content", "empty");
  expect_error(http_post(port_, path, user_chat("x", 2, {{"temperature", -1}}).dump()), 400,
               "temperature", "[0, 100]");
  expect_error(http_post(port_, path, user_chat("x", 9000).dump()), 400, "max_tokens",
               "(--max-new-tokens)");
  const json bmp =
      json::array({{{"type", "image_url"},
                    {"image_url", {{"url", "data:image/bmp;base64," + base64("BMxxxxxx")}}}}});
  expect_error(http_post(port_, path, user_chat(bmp, 2).dump()), 400,
               "messages[0].content[0].image_url", "PNG");
  const json bad64 =
      json::array({{{"type", "image_url"}, {"image_url", {{"url", "data:image/png;base64,@@@"}}}}});
  expect_error(http_post(port_, path, user_chat(bad64, 2).dump()), 400,
               "messages[0].content[0].image_url", "invalid base64");
  expect_error(http_post(port_, path, user_chat("x", 2, {{"tools", json::array()}}).dump()), 400,
               "tools", "not supported");
  expect_error(http_post(port_, path, user_chat("x", 2, {{"model", "gpt-4"}}).dump()), 404, "model",
               "does not exist");
  expect_error(http_get_request(port_, "/v1/nothing"), 404, "", "no such endpoint");
  // Unknown parameters are ignored and named in a header.
  const HttpResponse ok = http_post(port_, path, user_chat("x", 2, {{"frobnicate", 1}}).dump());
  EXPECT_EQ(ok.status, 200) << ok.body;
  EXPECT_EQ(ok.headers.at("x-ignored-parameters"), "frobnicate");
}

// Image URLs: fetched from a loopback server only with --allow-image-urls and
// --allow-private-image-urls; the answer equals the data: URL's.
TEST(HttpE2EImageUrls, FetchedOnlyWhenAllowed) {
  httplib::Server images;
  const std::string png = image_bytes("cat_face_28x28.png");
  images.Get("/cat.png", [&png](const httplib::Request&, httplib::Response& res) {
    res.set_content(png, "image/png");
  });
  const int image_port = images.bind_to_any_port("127.0.0.1");
  std::thread image_thread([&] { images.listen_after_bind(); });
  while (!images.is_running()) std::this_thread::sleep_for(Ms(1));
  const std::string url = "http://127.0.0.1:" + std::to_string(image_port) + "/cat.png";
  auto chat = [](const std::string& image_url) {
    return user_chat(json::array({{{"type", "text"}, {"text", "What is this?"}},
                                  {{"type", "image_url"}, {"image_url", {{"url", image_url}}}}}),
                     6, {{"temperature", 0}})
        .dump();
  };

  HttpServer plain = start_http_server({});
  expect_error(http_post(plain.http_port, "/v1/chat/completions", chat(url)), 400,
               "messages[0].content[1].image_url", "--allow-image-urls");
  EXPECT_EQ(stop_server(*plain.process), std::optional<int>(0));

  HttpServer public_only = start_http_server({"--allow-image-urls"});
  expect_error(http_post(public_only.http_port, "/v1/chat/completions", chat(url)), 400,
               "messages[0].content[1].image_url", "--allow-private-image-urls");
  EXPECT_EQ(stop_server(*public_only.process), std::optional<int>(0));

  HttpServer s = start_http_server({"--allow-image-urls", "--allow-private-image-urls"});
  const HttpResponse by_url = http_post(s.http_port, "/v1/chat/completions", chat(url));
  const HttpResponse by_data =
      http_post(s.http_port, "/v1/chat/completions", chat(data_url("cat_face_28x28.png", "png")));
  ASSERT_EQ(by_url.status, 200) << by_url.body;
  ASSERT_EQ(by_data.status, 200) << by_data.body;
  EXPECT_EQ(json::parse(by_url.body)["choices"], json::parse(by_data.body)["choices"]);
  EXPECT_EQ(stop_server(*s.process), std::optional<int>(0));
  images.stop();
  image_thread.join();
}

// HTTP-level hostile input against a server with small limits; it must keep serving others.
TEST(HttpE2EHostile, FramingSlowClientsIdleConnectionsAndBodyLimits) {
  HttpServer s = start_http_server(
      {"--max-images", "1", "--max-image-bytes", "1000", "--max-text-bytes", "1000"});
  const int port = s.http_port;
  const std::string body = user_chat("hi", 2).dump();
  const std::string head = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n";
  auto chunked = [](const std::string& b) {
    std::ostringstream out;
    out << std::hex << b.size() << "\r\n" << b << "\r\n0\r\n\r\n";
    return out.str();
  };
  // Request smuggling shapes: refused before the body is read. Only the headers are sent: the
  // server answers and closes at once, and a body still in flight would turn its close into a
  // reset that can destroy the answer before the client reads it.
  for (const std::string& raw :
       {head + "Content-Length: " + std::to_string(body.size()) + "\r\nContent-Length: 5\r\n\r\n",
        head + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        head + "Transfer-Encoding: gzip, chunked\r\n\r\n", head + "Content-Length: -1\r\n\r\n",
        head + "Content-Length: 12abc\r\n\r\n"}) {
    const HttpResponse r = http_raw(port, raw, 10);
    EXPECT_EQ(r.status, 400) << raw.substr(0, 120) << "\n" << r.body;
    EXPECT_EQ(json::parse(r.body)["error"]["param"], "body") << r.body;
  }
  EXPECT_EQ(http_raw(port, "NOT HTTP\r\n\r\n", 10).status, 400);
  // A chunked body is fine.
  EXPECT_EQ(http_raw(port, head + "Transfer-Encoding: chunked\r\n\r\n" + chunked(body)).status,
            200);

  // Bodies at and past the limit (1*(1336+1024) + 6*1000 + 1 MiB bytes; JSON allows spaces).
  const size_t limit = 1 * ((1000 + 2) / 3 * 4 + 1024) + 6 * 1000 + (1 << 20);
  const std::string at_limit = body + std::string(limit - body.size(), ' ');
  EXPECT_EQ(http_post(port, "/v1/chat/completions", at_limit).status, 200);
  // One byte past it: 413, answered from the headers without waiting for the body (sent only
  // as headers here, for the reason above).
  const auto t0 = std::chrono::steady_clock::now();
  const HttpResponse past =
      http_raw(port, head + "Content-Length: " + std::to_string(limit + 1) + "\r\n\r\n", 10);
  EXPECT_EQ(past.status, 413) << past.body;
  EXPECT_EQ(json::parse(past.body)["error"]["code"], "request_too_large");
  EXPECT_EQ(http_raw(port, head + "Content-Length: 999999999999\r\n\r\n", 10).status, 413);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, Ms(2000));
  // A body to any other path is refused before it is read.
  EXPECT_EQ(
      http_raw(port, "POST /v1/nothing HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
               10)
          .status,
      404);
  EXPECT_EQ(
      http_raw(port, "GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n", 10).status,
      404);
  // A chunked body that grows past the limit: 413 too (counted as it is read).
  const std::string big = at_limit + " ";
  const HttpResponse chunked_past =
      http_raw(port, head + "Transfer-Encoding: chunked\r\n\r\n" + chunked(big), 10);
  EXPECT_EQ(chunked_past.status, 413) << chunked_past.body;

  // A client sending its body a byte at a time holds no engine slot and no one else waits.
  std::thread slow([&] {
    const int fd = http_connect(port);
    const std::string raw = post_request("/v1/chat/completions", body);
    const size_t split = raw.size() - 20;
    send_all(fd, raw.substr(0, split));
    for (size_t i = split; i < raw.size(); ++i) {
      std::this_thread::sleep_for(Ms(100));
      send_all(fd, raw.substr(i, 1));
    }
    char buf[4096];
    std::string got;
    ssize_t n;
    while ((n = recv(fd, buf, sizeof(buf), 0)) > 0) got.append(buf, static_cast<size_t>(n));
    close(fd);
    EXPECT_EQ(parse_response(got).status, 200) << got;
  });
  std::this_thread::sleep_for(Ms(200));
  const auto t1 = std::chrono::steady_clock::now();
  EXPECT_EQ(http_post(port, "/v1/chat/completions", body).status, 200);
  EXPECT_LT(std::chrono::steady_clock::now() - t1, Ms(1500)) << "waited for the slow client";
  slow.join();

  // A thousand idle connections: 500 that never send anything and 500 keep-alive ones that
  // made a request and wait (the server keeps each open for --http-keep-alive, 2 s). Others
  // are still served at once.
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur < 4096 && rl.rlim_max >= 4096) {
    rl.rlim_cur = 4096;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  std::vector<int> idle;
  for (int i = 0; i < 500; ++i) idle.push_back(http_connect(port));
  const std::string keep_alive = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
  for (int i = 0; i < 500; ++i) {
    const int fd = http_connect(port, 10);
    ASSERT_TRUE(send_all(fd, keep_alive));
    idle.push_back(fd);
  }
  for (size_t i = 500; i < idle.size(); ++i) {  // each got its answer and stays open
    char buf[512];
    const ssize_t n = recv(idle[i], buf, sizeof(buf), 0);
    ASSERT_GT(n, 0) << "keep-alive connection " << i;
    EXPECT_EQ(std::string(buf, static_cast<size_t>(n)).rfind("HTTP/1.1 200", 0), 0u);
  }
  const auto t2 = std::chrono::steady_clock::now();
  EXPECT_EQ(http_post(port, "/v1/chat/completions", body).status, 200);
  EXPECT_EQ(http_get_request(port, "/health").status, 200);
  EXPECT_LT(std::chrono::steady_clock::now() - t2, Ms(2000)) << "queued behind idle connections";
  for (int fd : idle) close(fd);
  EXPECT_EQ(stop_server(*s.process), std::optional<int>(0)) << s.process->describe();
}

TEST(HttpE2ELimits, BodyTooLargeQueueFullAndLoading) {
  HttpServer s =
      start_http_server({"--max-images", "1", "--max-image-bytes", "1000", "--max-text-bytes",
                         "1000", "--max-running", "1", "--max-queued", "0",
                         // The busy request below must outlast a few round trips: the tiny
                         // model decodes 1000 tokens in well under a second.
                         "--context-length", "8192", "--max-new-tokens", "8000"});
  // The body limit derives from the image and text limits (about 1.05 MB here).
  // (Only the headers are sent: the server answers 413 from them and closes.)
  expect_error(http_raw(s.http_port,
                        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                        "Content-Length: 3145728\r\n\r\n"),
               413, "body", "--max-images");
  // One running request fills the batch and the queue holds none: 429. The long request
  // streams with logprobs (a chunk per token even while its text is held back), so it runs for
  // sure once a chunk with a logprob has arrived; closing its connection then cancels it.
  const int busy = http_connect(s.http_port);
  ASSERT_TRUE(send_all(
      busy, post_request("/v1/chat/completions",
                         user_chat("long", 8000,
                                   {{"ignore_eos", true}, {"stream", true}, {"logprobs", true}})
                             .dump())));
  std::string got;
  char buf[4096];
  ssize_t n;
  while (got.find("\"logprob\":") == std::string::npos &&
         (n = recv(busy, buf, sizeof(buf), 0)) > 0) {
    got.append(buf, static_cast<size_t>(n));
  }
  expect_error(http_post(s.http_port, "/v1/chat/completions", user_chat("x", 2).dump()), 429, "",
               "");
  close(busy);
  EXPECT_EQ(stop_server(*s.process), std::optional<int>(0));

  // While the model loads: 503 (and /health says so).
  HttpServer loading = start_http_server({"--load-delay-ms", "60000"}, /*wait_ready=*/false);
  expect_error(http_post(loading.http_port, "/v1/chat/completions", user_chat("x", 2).dump()), 503,
               "", "loading");
  EXPECT_EQ(http_get_request(loading.http_port, "/health").status, 503);
  loading.process->send_signal(SIGKILL);
}

}  // namespace
}  // namespace flamingo::e2e
