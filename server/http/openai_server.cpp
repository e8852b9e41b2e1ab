// The OpenAI-compatible HTTP front end. See openai_server.h.

#include "server/http/openai_server.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <optional>
#include <thread>

#include "model/error.h"
#include "server/api_keys.h"
#include "server/chat_template.h"
#include "server/engine/engine.h"
#include "server/http/connection_threads.h"
#include "server/http/http_listener.h"
#include "server/http/httplib_config.h"
#include "server/http/openai_embeddings.h"
#include "server/http/openai_generation.h"
#include "server/http/openai_response.h"
#include "server/metrics.h"
#include "server/request_builder.h"

namespace flamingo {

using nlohmann::json;

struct OpenAIServer::Impl {
  OpenAIServerConfig config;
  ServerMetrics& metrics;
  std::function<std::string()> render_metrics;
  std::unique_ptr<httplib::Server> server;
  std::thread thread;
  std::atomic<int> port{0};
  std::atomic<Engine*> engine{nullptr};
  std::atomic<const RequestBuilder*> builder{nullptr};
  std::atomic<const ChatTemplate*> chat{nullptr};
  std::atomic<ClipEngine*> clip{nullptr};
  std::atomic<const ClipRequestBuilder*> clip_builder{nullptr};
  std::atomic<bool> clip_only{false};
  std::atomic<bool> shutting_down{false};
  std::atomic<uint64_t> next_id{1};
  int64_t created = std::time(nullptr);

  Impl(OpenAIServerConfig c, ServerMetrics& m, std::function<std::string()> r)
      : config(std::move(c)), metrics(m), render_metrics(std::move(r)) {}

  OpenAIGeneration generation{config, metrics};

  ServingContext available() const {
    if (shutting_down.load()) throw HttpError(503, "the server is shutting down");
    if (clip_only.load()) {
      throw HttpError(400,
                      "the served model '" + config.served_model_name +
                          "' is a CLIP: it answers POST /v1/embeddings; chat and completions need "
                          "an IDEFICS model",
                      "model", "invalid_request_error", "model_not_supported");
    }
    ServingContext c{engine.load(), builder.load(), chat.load()};
    if (c.engine == nullptr) throw HttpError(503, "the model is loading, retry later");
    return c;
  }

  // /health: the served model (an IDEFICS, or a CLIP --model) is loaded and not shutting down.
  void check_serving() const {
    if (shutting_down.load()) throw HttpError(503, "the server is shutting down");
    const bool loaded = clip_only.load() ? clip.load() != nullptr : engine.load() != nullptr;
    if (!loaded) throw HttpError(503, "the model is loading, retry later");
  }

  json model_json() const {
    json model = {{"id", config.served_model_name},
                  {"object", "model"},
                  {"created", created},
                  {"owned_by", "flamingo-serve"}};
    if (const RequestBuilder* b = builder.load()) model["max_model_len"] = b->context_length();
    return model;
  }

  // Framing that proxies and servers may read differently (request smuggling) is refused
  // before the body is read: several or malformed Content-Length headers, Transfer-Encoding
  // other than exactly "chunked", or both headers.
  HttpError body_too_large() const {
    return HttpError(413,
                     "body: larger than the limit " + std::to_string(config.max_body_bytes) +
                         " bytes (derived from --max-images, --max-image-bytes and "
                         "--max-text-bytes)",
                     "body", "", "request_too_large");
  }

  static std::optional<std::string> framing_error(const httplib::Request& req) {
    const size_t lengths = req.get_header_value_count("Content-Length");
    const size_t encodings = req.get_header_value_count("Transfer-Encoding");
    if (lengths > 1) return "more than one Content-Length header";
    if (encodings > 1) return "more than one Transfer-Encoding header";
    if (lengths == 1 && encodings == 1) return "both Content-Length and Transfer-Encoding";
    if (lengths == 1) {
      const std::string v = req.get_header_value("Content-Length");
      if (v.empty() || v.size() > 18 ||
          !std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; })) {
        return "malformed Content-Length '" + v.substr(0, 40) + "'";
      }
    }
    if (encodings == 1 && req.get_header_value("Transfer-Encoding") != "chunked") {
      return "unsupported Transfer-Encoding (only \"chunked\")";
    }
    return std::nullopt;
  }

  // The body, read within max_body_bytes; nullopt after answering 413 when it is larger (the
  // connection then closes).
  std::optional<std::string> read_body(const httplib::ContentReader& reader,
                                       httplib::Response& res) const {
    std::string body;
    bool too_large = false;
    reader([&](const char* data, size_t n) {
      if (static_cast<int64_t>(body.size() + n) > config.max_body_bytes) {
        too_large = true;
        return false;
      }
      body.append(data, n);
      return true;
    });
    if (!too_large) return body;
    send_error(res, body_too_large());
    res.set_header("Connection", "close");
    return std::nullopt;
  }

  void register_routes(httplib::Server& s) {
    s.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      std::optional<HttpError> error;
      if (const std::optional<std::string> framing = framing_error(req)) {
        error = HttpError(400, "body: " + *framing, "body");
      } else if (req.has_header("Content-Length") &&
                 std::stoll(req.get_header_value("Content-Length")) > config.max_body_bytes) {
        error = body_too_large();  // before waiting for a body that large
      } else if (const bool has_body = req.has_header("Transfer-Encoding") ||
                                       (req.has_header("Content-Length") &&
                                        req.get_header_value("Content-Length") != "0");
                 has_body && !(req.method == "POST" &&
                               (req.path == "/v1/chat/completions" ||
                                req.path == "/v1/completions" || req.path == "/v1/embeddings"))) {
        // httplib would read the body (a chunked one without limit) before routing.
        error =
            HttpError(404, "no such endpoint: " + req.method + " " + req.path.substr(0, 200) +
                               " (with a body: POST /v1/chat/completions, POST /v1/completions, "
                               "POST /v1/embeddings)");
      }
      if (!error && req.path.rfind("/v1/", 0) == 0 && config.api_keys != nullptr &&
          !config.api_keys->accepts(req.get_header_value("Authorization"))) {
        error = HttpError(401, kApiKeyRequired, "", "invalid_request_error", "invalid_api_key");
        res.set_header("WWW-Authenticate", "Bearer");
        if (req.path == "/v1/chat/completions" || req.path == "/v1/completions") {
          metrics.record_request(req.path == "/v1/completions" ? "completions" : "chat.completions",
                                 "unauthenticated", "openai");
        }
      }
      if (!error) return httplib::Server::HandlerResponse::Unhandled;
      send_error(res, *error);
      if (req.get_header_value("Connection") != "close") res.set_header("Connection", "close");
      return httplib::Server::HandlerResponse::Handled;
    });
    // The bodies are read here, within the limit: httplib 0.11 applies its payload limit to
    // Content-Length bodies only, and would read a chunked body of any size into memory.
    for (const auto& [path, api] : {std::pair{"/v1/chat/completions", ApiKind::kChat},
                                    std::pair{"/v1/completions", ApiKind::kCompletion}}) {
      s.Post(path, [this, api = api](const httplib::Request& req, httplib::Response& res,
                                     const httplib::ContentReader& reader) {
        const std::optional<std::string> body = read_body(reader, res);
        if (!body) return;
        generation.handle(
            api, req, *body, [this] { return available(); }, port.load(), res);
      });
    }
    s.Post("/v1/embeddings", [this](const httplib::Request&, httplib::Response& res,
                                    const httplib::ContentReader& reader) {
      const std::optional<std::string> body = read_body(reader, res);
      if (!body) return;
      ClipEngine* e = clip.load();
      const ClipRequestBuilder* b = clip_builder.load();
      if (shutting_down.load())
        return send_error(res, HttpError(503, "the server is shutting down"));
      if (e == nullptr || b == nullptr) {
        if (engine.load() == nullptr) {
          return send_error(res, HttpError(503, "the model is loading, retry later"));
        }
        return send_error(res, HttpError(400,
                                         "the served model is an IDEFICS, which has no text "
                                         "tower for embeddings; start the server with "
                                         "--clip-model DIR to serve a CLIP beside it",
                                         "model", "invalid_request_error", "model_not_supported"));
      }
      handle_embeddings(*body, config.media, config.served_model_name, *e, *b, metrics, res);
    });
    s.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(dump(json{{"object", "list"}, {"data", json::array({model_json()})}}),
                      "application/json");
    });
    s.Get(R"(/v1/models/(.+))", [this](const httplib::Request& req, httplib::Response& res) {
      try {
        if (req.matches[1].str() != config.served_model_name) {
          throw HttpError(404,
                          "the model '" + req.matches[1].str().substr(0, 100) +
                              "' does not exist (this server serves '" + config.served_model_name +
                              "')",
                          "model", "invalid_request_error", "model_not_found");
        }
        res.set_content(dump(model_json()), "application/json");
      } catch (const HttpError& e) {
        send_error(res, e);
      }
    });
    s.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
      try {
        check_serving();
        res.set_content("ok\n", "text/plain");
      } catch (const HttpError& e) {
        send_error(res, e);
      }
    });
    s.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(render_metrics ? render_metrics() : std::string(),
                      "text/plain; version=0.0.4; charset=utf-8");
    });
    s.set_error_handler([this](const httplib::Request& req, httplib::Response& res) {
      if (!res.body.empty()) return;
      if (res.status == 413) {
        send_error(res, body_too_large());
      } else if (res.status == 404) {
        send_error(
            res, HttpError(404, "no such endpoint: " + req.method + " " + req.path.substr(0, 200) +
                                    " (POST /v1/chat/completions, POST /v1/completions, POST "
                                    "/v1/embeddings, GET /v1/models, GET /health, GET /metrics)"));
      } else if (res.status == 400) {
        send_error(res, HttpError(400, "malformed HTTP request"));
      } else {
        send_error(res, HttpError(res.status, "HTTP error " + std::to_string(res.status)));
      }
    });
    s.set_exception_handler(
        [](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
          std::string what = "internal error";
          try {
            std::rethrow_exception(ep);
          } catch (const std::exception& e) {
            what = e.what();
          } catch (...) {
          }
          send_error(res, HttpError(500, what));
        });
  }
};

OpenAIServer::OpenAIServer(OpenAIServerConfig config, ServerMetrics& metrics,
                           std::function<std::string()> render_metrics)
    : impl_(std::make_unique<Impl>(std::move(config), metrics, std::move(render_metrics))) {}

OpenAIServer::~OpenAIServer() { stop(); }

int OpenAIServer::start() {
  const OpenAIServerConfig& c = impl_->config;
  std::unique_ptr<httplib::Server> server;
  if (c.tls_cert.empty()) {
    server = std::make_unique<httplib::Server>();
  } else {
    auto tls = std::make_unique<httplib::SSLServer>(
        c.tls_cert.c_str(), c.tls_key.c_str(),
        c.tls_client_ca.empty() ? nullptr : c.tls_client_ca.c_str());
    if (!tls->is_valid()) {
      throw Error("--tls-cert/--tls-key" +
                  std::string(c.tls_client_ca.empty() ? "" : "/--tls-client-ca") +
                  ": cannot load the certificate '" + c.tls_cert + "' with the key '" + c.tls_key +
                  "'" + (c.tls_client_ca.empty() ? "" : " and the CA '" + c.tls_client_ca + "'") +
                  " (PEM files, the key matching the certificate)");
    }
    server = std::move(tls);
  }
  const size_t threads = static_cast<size_t>(std::max(1, c.threads));
  server->new_task_queue = [threads] { return new ConnectionThreads(threads); };
  server->set_keep_alive_timeout(c.keep_alive_timeout_s);
  server->set_keep_alive_max_count(static_cast<size_t>(c.keep_alive_max_requests));
  server->set_read_timeout(c.read_timeout_s, 0);
  server->set_payload_max_length(static_cast<size_t>(c.max_body_bytes));
  impl_->register_routes(*server);
  const int bound = start_listening(
      *server, c.host, c.port, "http",
      " (is the port in use? choose another with --http-port, or 0 to turn HTTP off)",
      impl_->thread);
  impl_->server = std::move(server);
  impl_->port = bound;
  return bound;
}

void OpenAIServer::attach(Engine* engine, const RequestBuilder* builder, const ChatTemplate* chat) {
  impl_->chat.store(chat);
  impl_->builder.store(builder);
  impl_->engine.store(engine);
}

void OpenAIServer::attach_clip(ClipEngine* engine, const ClipRequestBuilder* builder,
                               bool clip_only) {
  impl_->clip_builder.store(builder);
  impl_->clip.store(engine);
  impl_->clip_only.store(clip_only);
}

void OpenAIServer::begin_shutdown() { impl_->shutting_down.store(true); }

void OpenAIServer::stop() {
  if (!impl_->server) return;
  impl_->server->stop();
  if (impl_->thread.joinable()) impl_->thread.join();
  impl_->server.reset();
  impl_->port = 0;
}

}  // namespace flamingo
