// The Prometheus scrape endpoint: a tiny HTTP server (cpp-httplib, hidden behind a pimpl so
// this header stays light) that answers GET /metrics with the text of a render callback,
// Content-Type "text/plain; version=0.0.4; charset=utf-8", and 404 on every other path. It
// listens on its own thread (plus a small pool of 2 connection workers).
//
// Thread-safety: start(), stop() and the destructor are meant for one owning thread; port()
// and running() may be read from any thread. The render callback runs on the HTTP worker
// threads, possibly two at once (ServerMetrics::render serializes itself); an exception from
// it is answered 500 with its message.
#pragma once

#include <functional>
#include <memory>
#include <string>

namespace flamingo {

class MetricsHttpServer {
 public:
  using RenderFn = std::function<std::string()>;

  explicit MetricsHttpServer(RenderFn render);
  ~MetricsHttpServer();  // stop()s
  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;

  // Binds host:port (port 0: any free port) and starts serving; returns the bound port.
  // flamingo::Error naming host:port when the port is out of range, the address cannot be
  // bound (in use, unknown host) or the server is already running. When start() returns, the
  // server accepts connections and stop() is safe.
  int start(const std::string& host, int port);

  // Stops accepting, finishes in-flight requests (an idle keep-alive connection delays this
  // by at most ~1 s) and joins the threads. No-op when not running; start() may be called
  // again afterwards.
  void stop();

  bool running() const;
  int port() const;  // the bound port while running, else 0

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace flamingo
