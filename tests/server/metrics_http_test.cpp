#include "server/metrics_http.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>

#include "model/error.h"
#include "server/http/httplib_config.h"
#include "server/metrics.h"

namespace flamingo {
namespace {

constexpr const char* kHost = "127.0.0.1";

httplib::Client make_client(int port) {
  httplib::Client cli(kHost, port);
  cli.set_connection_timeout(std::chrono::seconds(5));
  cli.set_read_timeout(std::chrono::seconds(5));
  return cli;
}

TEST(MetricsHttpServerTest, ServesMetricsAnd404Elsewhere) {
  std::atomic<int> renders{0};
  MetricsHttpServer server([&renders] {
    ++renders;
    return std::string("# HELP x_total An x.\n# TYPE x_total counter\nx_total 7\n");
  });
  EXPECT_FALSE(server.running());
  const int port = server.start(kHost, 0);
  ASSERT_GT(port, 0);
  ASSERT_LE(port, 65535);
  EXPECT_EQ(server.port(), port);
  EXPECT_TRUE(server.running());

  httplib::Client cli = make_client(port);
  auto res = cli.Get("/metrics");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->get_header_value("Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_EQ(res->body, "# HELP x_total An x.\n# TYPE x_total counter\nx_total 7\n");
  EXPECT_EQ(renders.load(), 1);

  res = cli.Get("/metrics");  // rendered afresh for every scrape
  ASSERT_TRUE(res);
  EXPECT_EQ(renders.load(), 2);

  for (const char* path : {"/", "/metric", "/metrics/x", "/favicon.ico"}) {
    res = cli.Get(path);
    ASSERT_TRUE(res) << path;
    EXPECT_EQ(res->status, 404) << path;
  }
  EXPECT_EQ(renders.load(), 2);
  // A request with a body is refused before the body is read (httplib would read a chunked
  // one without limit).
  res = cli.Post("/metrics", std::string(100, 'x'), "text/plain");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 400);
  EXPECT_EQ(renders.load(), 2);

  server.stop();
  EXPECT_FALSE(server.running());
  EXPECT_EQ(server.port(), 0);
  httplib::Client after = make_client(port);
  after.set_connection_timeout(std::chrono::seconds(1));
  res = after.Get("/metrics");
  EXPECT_FALSE(res) << "still answering after stop(): " << res->status;
  server.stop();  // a second stop is a no-op
}

TEST(MetricsHttpServerTest, ServesServerMetrics) {
  ServerMetrics metrics;
  metrics.set_collector([](ServerMetrics& m) { m.set_kv_blocks_free(123); });
  metrics.record_request("Caption", "ok");
  MetricsHttpServer server([&metrics] { return metrics.render(); });
  const int port = server.start(kHost, 0);
  httplib::Client cli = make_client(port);
  auto res = cli.Get("/metrics");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_NE(res->body.find("# TYPE flamingo_requests_total counter\n"), std::string::npos);
  EXPECT_NE(
      res->body.find("flamingo_requests_total{rpc=\"Caption\",outcome=\"ok\",api=\"grpc\"} 1\n"),
      std::string::npos)
      << res->body;
  EXPECT_NE(res->body.find("\nflamingo_kv_blocks_free 123\n"), std::string::npos) << res->body;
}

TEST(MetricsHttpServerTest, RenderFailureIs500) {
  MetricsHttpServer server([]() -> std::string { throw std::runtime_error("engine gone"); });
  const int port = server.start(kHost, 0);
  httplib::Client cli = make_client(port);
  auto res = cli.Get("/metrics");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 500);
  EXPECT_NE(res->body.find("engine gone"), std::string::npos) << res->body;
}

TEST(MetricsHttpServerTest, BindFailuresThrowNamingHostAndPort) {
  MetricsHttpServer first([] { return std::string(); });
  const int port = first.start(kHost, 0);

  MetricsHttpServer second([] { return std::string(); });
  const std::string where = std::string(kHost) + ":" + std::to_string(port);
  try {
    second.start(kHost, port);
    FAIL() << "binding a port in use did not throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(where), std::string::npos) << e.what();
  }
  EXPECT_FALSE(second.running());

  // An address this machine does not have (TEST-NET-1, RFC 5737).
  try {
    second.start("192.0.2.1", 0);
    FAIL() << "binding a foreign address did not throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("192.0.2.1:0"), std::string::npos) << e.what();
  }
  EXPECT_THROW(second.start(kHost, 70000), Error);
  EXPECT_THROW(second.start(kHost, -1), Error);

  // Starting twice is an error; the first server keeps serving.
  EXPECT_THROW(first.start(kHost, 0), Error);
  EXPECT_EQ(first.port(), port);
  httplib::Client cli = make_client(port);
  auto res = cli.Get("/metrics");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);

  // The failed server can still start elsewhere.
  EXPECT_GT(second.start(kHost, 0), 0);
}

TEST(MetricsHttpServerTest, ExplicitPortAndRestart) {
  // Find a free port, release it, then bind it explicitly.
  int port = 0;
  {
    MetricsHttpServer probe([] { return std::string("a\n"); });
    port = probe.start(kHost, 0);
  }
  MetricsHttpServer server([] { return std::string("b\n"); });
  EXPECT_EQ(server.start(kHost, port), port);
  auto res = make_client(port).Get("/metrics");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->body, "b\n");
  server.stop();
  const int again = server.start(kHost, 0);
  res = make_client(again).Get("/metrics");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->body, "b\n");
}

TEST(MetricsHttpServerTest, StopRightAfterStartAndWithKeepAliveClient) {
  MetricsHttpServer server([] { return std::string("x 1\n"); });
  for (int i = 0; i < 20; ++i) {  // stop() right after start() must never hang
    server.start(kHost, 0);
    server.stop();
  }

  const int port = server.start(kHost, 0);
  httplib::Client cli = make_client(port);
  cli.set_keep_alive(true);
  auto res = cli.Get("/metrics");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  const auto t0 = std::chrono::steady_clock::now();
  server.stop();  // the idle keep-alive connection delays this by at most ~1 s
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(seconds, 3.0);
  EXPECT_FALSE(server.running());
}

TEST(MetricsHttpServerTest, DestructorStops) {
  int port = 0;
  {
    MetricsHttpServer server([] { return std::string("x 1\n"); });
    port = server.start(kHost, 0);
    auto res = make_client(port).Get("/metrics");
    ASSERT_TRUE(res);
  }
  httplib::Client cli = make_client(port);
  cli.set_connection_timeout(std::chrono::seconds(1));
  EXPECT_FALSE(cli.Get("/metrics"));
}

}  // namespace
}  // namespace flamingo
