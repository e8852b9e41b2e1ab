// The OpenAI-compatible HTTP/1.1 front end (cpp-httplib behind a pimpl): POST
// /v1/chat/completions and /v1/completions (streaming as Server-Sent Events), POST
// /v1/embeddings when a CLIP is served (openai_embeddings.h), GET /v1/models,
// /health and /metrics, on the same Engine and RequestBuilder as gRPC (every limit and
// validation shared). Until attach() the model is loading: requests answer 503; after
// begin_shutdown() too. A client that closes its connection cancels its request within an
// engine step. Errors are OpenAI's {"error":{...}} with 400/401/404/413/429/500/503.
// Thread-safety: every method is thread-safe; requests run on httplib's worker threads.
// Torch-free.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "server/http/openai_request.h"

namespace flamingo {

class ApiKeys;
class Engine;
class RequestBuilder;
class ChatTemplate;
class ClipEngine;
class ClipRequestBuilder;
class ServerMetrics;

struct OpenAIServerConfig {
  std::string host = "127.0.0.1";
  int32_t port = 8000;            // 0: any free port (start() returns it)
  std::string served_model_name;  // the id /v1/models lists and requests may name
  MediaPolicy media;
  int64_t max_body_bytes = 64 << 20;  // larger bodies: 413
  int32_t threads = 1024;  // connections served at once (a thread each, started on demand)
  // Idle keep-alive connections are closed after this; it also bounds how long stop() waits
  // for them (httplib serves a connection on one thread until it closes).
  int32_t keep_alive_timeout_s = 2;
  int32_t keep_alive_max_requests = 100;  // requests per connection
  int32_t read_timeout_s = 30;            // a request body must arrive within this
  // API keys /v1/ requests must send as "Authorization: Bearer KEY" (401 otherwise); /health
  // and /metrics stay open. Null or without keys: every client is let in. Outlives the server.
  const ApiKeys* api_keys = nullptr;
  // TLS (https) when tls_cert is set: PEM certificate and key files; with tls_client_ca,
  // clients must present a certificate that CA signed.
  std::string tls_cert, tls_key, tls_client_ca;
};

class OpenAIServer {
 public:
  OpenAIServer(OpenAIServerConfig config, ServerMetrics& metrics,
               std::function<std::string()> render_metrics);
  ~OpenAIServer();  // stop()
  OpenAIServer(const OpenAIServer&) = delete;
  OpenAIServer& operator=(const OpenAIServer&) = delete;

  // Binds and starts listening on its own thread; returns the bound port. Throws
  // flamingo::Error naming the address when it cannot bind, or the files when the TLS
  // certificate, key or client CA cannot be loaded.
  int start();
  // Serves requests from now on; all three must outlive the server's requests.
  void attach(Engine* engine, const RequestBuilder* builder, const ChatTemplate* chat);
  // POST /v1/embeddings is served from now on (openai_embeddings.h); both must outlive the
  // server's requests. With clip_only (--model is a CLIP) chat and completions answer 400.
  void attach_clip(ClipEngine* engine, const ClipRequestBuilder* builder, bool clip_only);
  // New requests answer 503; requests already accepted run to their end.
  void begin_shutdown();
  // Stops listening and joins (waits for requests in progress to end).
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace flamingo
