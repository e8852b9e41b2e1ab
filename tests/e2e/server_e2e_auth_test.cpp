// End-to-end test of API keys (issue 11, ctest label e2e): a real server started with
// --api-key-file and FLAMINGO_API_KEY answers gRPC calls without a valid "authorization: Bearer
// KEY" UNAUTHENTICATED and /v1/ HTTP requests 401 (OpenAI's error shape), serves those with a
// key from either source, and keeps health, /health and /metrics open for probes.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tests/e2e/http_client.h"
#include "tests/e2e/server_e2e_util.h"

namespace flamingo::e2e {
namespace {

using grpc::StatusCode;

constexpr const char* kFileKey = "sk-file-key-0123456789";
constexpr const char* kEnvKey = "sk-env-key-abcdef";

struct AuthServer {
  std::unique_ptr<ServerProcess> process;
  int http_port = 0;
  std::string key_file;
};

AuthServer& auth_server() {
  static AuthServer s;
  if (!s.process) {
    s.key_file =
        (std::filesystem::temp_directory_path() / ("flamingo-keys-" + std::to_string(::getpid())))
            .string();
    std::ofstream(s.key_file) << "# test keys\n" << kFileKey << "\n";
    s.http_port = free_port();
    s.process =
        start_server({"--api-key-file", s.key_file, "--http-port", std::to_string(s.http_port)},
                     true, {std::string("FLAMINGO_API_KEY=") + kEnvKey});
    std::filesystem::remove(s.key_file);  // read at start
    if (!s.process->wait_for_log("http listening on", Ms(30000))) {
      throw std::runtime_error("no 'http listening' line: " + s.process->describe());
    }
  }
  return s;
}

grpc::Status generate(const std::string& authorization, v1::GenerateResponse* out = nullptr) {
  auto stub = make_stub(auth_server().process->address());
  grpc::ClientContext ctx;
  set_timeout(ctx, Ms(60000));
  if (!authorization.empty()) ctx.AddMetadata("authorization", authorization);
  v1::GenerateResponse resp;
  const grpc::Status s = stub->Generate(&ctx, generate_request({text_part("A cat")}, 2), &resp);
  if (out != nullptr) *out = resp;
  return s;
}

std::string get_with(const std::string& path, const std::string& authorization) {
  return "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" +
         (authorization.empty() ? "" : "Authorization: " + authorization + "\r\n") + "\r\n";
}

TEST(AuthE2E, GrpcCallsNeedAKeyFromTheFileOrTheEnvironment) {
  for (const std::string& bad : {std::string(), std::string("Bearer wrong-key"),
                                 std::string(kFileKey), std::string("Basic ") + kFileKey}) {
    const grpc::Status s = generate(bad);
    EXPECT_EQ(s.error_code(), StatusCode::UNAUTHENTICATED) << "'" << bad << "'";
    EXPECT_NE(s.error_message().find("authorization: Bearer"), std::string::npos)
        << s.error_message();
  }
  v1::GenerateResponse resp;
  ASSERT_TRUE(generate(std::string("Bearer ") + kFileKey, &resp).ok());
  EXPECT_EQ(resp.usage().completion_tokens(), 2);
  EXPECT_TRUE(generate(std::string("bearer ") + kEnvKey).ok());
  // Malformed bytes without a key: UNAUTHENTICATED first (nothing is parsed for strangers).
  std::string response;
  const grpc::Status raw =
      generic_unary(make_channel(auth_server().process->address()),
                    "/flamingo.v1.Flamingo/GetModelInfo", "\xff\xfe", &response);
  EXPECT_EQ(raw.error_code(), StatusCode::UNAUTHENTICATED);
  // The health service stays open for probes.
  const HealthResult h = health_check(make_channel(auth_server().process->address()), "");
  EXPECT_TRUE(h.status.ok()) << h.status.error_message();
  EXPECT_EQ(h.health, Health::kServing);
}

TEST(AuthE2E, HttpV1NeedsAKeyHealthAndMetricsDoNot) {
  const int port = auth_server().http_port;
  const HttpResponse denied = http_raw(port, get_with("/v1/models", ""));
  EXPECT_EQ(denied.status, 401);
  EXPECT_EQ(denied.headers.count("www-authenticate"), 1u);
  const nlohmann::json err = nlohmann::json::parse(denied.body);
  EXPECT_EQ(err["error"]["code"], "invalid_api_key");
  EXPECT_NE(err["error"]["message"].get<std::string>().find("Bearer"), std::string::npos);
  EXPECT_EQ(http_raw(port, get_with("/v1/models", "Bearer nope")).status, 401);
  const std::string body = R"({"prompt":"A cat","max_tokens":2})";
  EXPECT_EQ(http_raw(port, post_request("/v1/completions", body)).status, 401);
  EXPECT_EQ(http_raw(port, get_with("/v1/models", std::string("Bearer ") + kFileKey)).status, 200);
  const HttpResponse ok =
      http_raw(port, post_request("/v1/completions", body,
                                  std::string("Authorization: Bearer ") + kEnvKey + "\r\n"));
  EXPECT_EQ(ok.status, 200) << ok.body;
  EXPECT_EQ(http_raw(port, get_with("/health", "")).status, 200);
  const HttpResponse metrics = http_raw(port, get_with("/metrics", ""));
  ASSERT_EQ(metrics.status, 200);
  EXPECT_NE(
      metrics.body.find(
          R"(flamingo_requests_total{rpc="completions",outcome="unauthenticated",api="openai"} 1)"),
      std::string::npos);
}

}  // namespace
}  // namespace flamingo::e2e
