#include "server/metrics_http.h"

#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <exception>
#include <thread>
#include <utility>

#include "model/error.h"
#include "server/http/http_listener.h"
#include "server/http/httplib_config.h"

namespace flamingo {
namespace {

constexpr const char* kContentType = "text/plain; version=0.0.4; charset=utf-8";
constexpr size_t kWorkerThreads = 2;
constexpr time_t kKeepAliveTimeoutSeconds = 1;  // bounds how long stop() waits on idle clients

}  // namespace

struct MetricsHttpServer::Impl {
  RenderFn render;
  std::unique_ptr<httplib::Server> server;
  std::thread thread;
  std::atomic<int> port{0};
};

MetricsHttpServer::MetricsHttpServer(RenderFn render) : impl_(std::make_unique<Impl>()) {
  impl_->render = std::move(render);
}

MetricsHttpServer::~MetricsHttpServer() { stop(); }

int MetricsHttpServer::start(const std::string& host, int port) {
  const std::string where = host + ":" + std::to_string(port);
  if (impl_->server) {
    throw Error("metrics: cannot start on " + where + ": already running on port " +
                std::to_string(impl_->port.load()));
  }

  auto server = std::make_unique<httplib::Server>();
  server->new_task_queue = [] { return new httplib::ThreadPool(kWorkerThreads); };
  server->set_keep_alive_timeout(kKeepAliveTimeoutSeconds);
  RenderFn render = impl_->render;
  server->Get("/metrics", [render](const httplib::Request&, httplib::Response& res) {
    try {
      res.set_content(render ? render() : std::string(), kContentType);
      res.status = 200;
    } catch (const std::exception& e) {
      res.status = 500;
      res.set_content(std::string("metrics: render failed: ") + e.what() + "\n",
                      "text/plain; charset=utf-8");
    }
  });
  // httplib reads a request's body before routing, a chunked one without limit: none is needed.
  server->set_pre_routing_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!req.has_header("Transfer-Encoding") &&
        (!req.has_header("Content-Length") || req.get_header_value("Content-Length") == "0")) {
      return httplib::Server::HandlerResponse::Unhandled;
    }
    res.status = 400;
    res.set_header("Connection", "close");
    res.set_content("requests with a body are not served here (metrics are at GET /metrics)\n",
                    "text/plain; charset=utf-8");
    return httplib::Server::HandlerResponse::Handled;
  });
  server->set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (res.status == 404) {
      res.set_content("not found: " + req.path + " (metrics are at /metrics)\n",
                      "text/plain; charset=utf-8");
    }
  });

  const int bound = start_listening(*server, host, port, "metrics", "", impl_->thread);
  impl_->server = std::move(server);
  impl_->port = bound;
  return bound;
}

void MetricsHttpServer::stop() {
  if (!impl_->server) return;
  impl_->server->stop();
  if (impl_->thread.joinable()) impl_->thread.join();
  impl_->server.reset();
  impl_->port = 0;
}

bool MetricsHttpServer::running() const { return impl_->port.load() != 0; }

int MetricsHttpServer::port() const { return impl_->port.load(); }

}  // namespace flamingo
