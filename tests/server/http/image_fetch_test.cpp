// Tests of server/http/image_fetch.h: URL parsing, which addresses count as internal, and
// fetching from a loopback httplib server: the flags that allow it, size limits (by
// Content-Length and by the body), redirects (followed, bounded, checked again), HTTP errors and
// the time limit.
#include "server/http/image_fetch.h"

#include <gtest/gtest.h>

#include <thread>

#include "server/http/httplib_config.h"
#include "server/http/openai_request.h"

namespace flamingo {
namespace {

TEST(ImageFetch, ParsesHttpUrls) {
  const auto u = parse_http_url("HTTP://Example.com:8080/a/b.png?x=1#frag");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->scheme, "http");
  EXPECT_EQ(u->host, "Example.com");
  EXPECT_EQ(u->port, 8080);
  EXPECT_EQ(u->target, "/a/b.png?x=1");
  const auto v6 = parse_http_url("https://[::1]/x");
  ASSERT_TRUE(v6);
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->port, 443);
  EXPECT_EQ(parse_http_url("http://h")->target, "/");
  EXPECT_EQ(parse_http_url("http://h?q")->target, "/?q");
  for (const char* bad :
       {"ftp://h/x", "http://", "http://user:pw@h/x", "http://h:0/", "http://h:99999/",
        "http://h:/", "http://h:8x/", "http://[::1/x", "http://[::1]x/"}) {
    EXPECT_FALSE(parse_http_url(bad)) << bad;
  }
}

TEST(ImageFetch, InternalAddresses) {
  for (const char* a :
       {"127.0.0.1", "10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1", "169.254.169.254",
        "100.64.0.1", "0.0.0.0", "224.0.0.1", "255.255.255.255", "::1", "::", "fc00::1", "fd12::1",
        "fe80::1", "ff02::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "not an address"}) {
    EXPECT_TRUE(is_internal_address(a)) << a;
  }
  for (const char* a :
       {"8.8.8.8", "172.32.0.1", "100.128.0.1", "1.1.1.1", "2001:4860::8888", "::ffff:8.8.8.8"}) {
    EXPECT_FALSE(is_internal_address(a)) << a;
  }
}

// A loopback image server: /img (the bytes), /big (Content-Length over the limit), /chunked (a
// body over the limit without a length), /redirect -> /img, /loop -> /loop, /missing (404),
// /slow (answers after 1.5 s).
class LoopbackServer {
 public:
  LoopbackServer() {
    server_.Get("/img", [](const httplib::Request&, httplib::Response& res) {
      res.set_content("\x89PNG-bytes", "image/png");
    });
    server_.Get("/big", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(std::string(5000, 'x'), "image/png");
    });
    server_.Get("/chunked", [](const httplib::Request&, httplib::Response& res) {
      res.set_chunked_content_provider("image/png", [](size_t offset, httplib::DataSink& sink) {
        if (offset >= 50000) {
          sink.done();
          return true;
        }
        const std::string block(1000, 'y');
        return sink.write(block.data(), block.size());
      });
    });
    server_.Get("/redirect",
                [](const httplib::Request&, httplib::Response& res) { res.set_redirect("/img"); });
    server_.Get("/loop",
                [](const httplib::Request&, httplib::Response& res) { res.set_redirect("/loop"); });
    server_.Get("/slow", [](const httplib::Request&, httplib::Response& res) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1500));
      res.set_content("late", "image/png");
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    while (!server_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ~LoopbackServer() {
    server_.stop();
    thread_.join();
  }
  std::string url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }

 private:
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
};

void expect_refused(const std::string& url, const ImageFetchPolicy& p, const std::string& needle) {
  try {
    fetch_image_url(url, p, "messages[0].content[0].image_url");
    FAIL() << "fetched " << url;
  } catch (const HttpError& e) {
    EXPECT_EQ(e.status(), 400);
    EXPECT_EQ(e.param(), "messages[0].content[0].image_url");
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(ImageFetch, FetchesWithinTheLimits) {
  LoopbackServer server;
  ImageFetchPolicy p;
  expect_refused(server.url("/img"), p, "--allow-image-urls");
  p.allow = true;
  expect_refused(server.url("/img"), p, "--allow-private-image-urls");
  p.allow_private = true;
  EXPECT_EQ(fetch_image_url(server.url("/img"), p, "x"), "\x89PNG-bytes");
  EXPECT_EQ(fetch_image_url(server.url("/redirect"), p, "x"), "\x89PNG-bytes");
  expect_refused(server.url("/loop"), p, "more than 3 redirects");
  expect_refused(server.url("/missing"), p, "HTTP 404");
  p.max_bytes = 1000;
  expect_refused(server.url("/big"), p, "(--max-image-bytes)");
  expect_refused(server.url("/chunked"), p, "(--max-image-bytes)");
  p.timeout_s = 0.3;
  const auto start = std::chrono::steady_clock::now();
  expect_refused(server.url("/slow"), p, "");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(1200));
  p.max_redirects = 0;
  expect_refused(server.url("/redirect"), p, "more than 0 redirects");
  expect_refused("http://user@127.0.0.1/x", p, "userinfo");
}

}  // namespace
}  // namespace flamingo
