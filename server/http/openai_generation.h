// One OpenAI-style generation request (/v1/chat/completions or /v1/completions) from its read
// body to its answer: parsing and validation (openai_request.h, the chat template,
// RequestBuilder), submitting n choices to the Engine, waiting for them while watching the
// client's socket (a client that goes away cancels), and the JSON or Server-Sent-Events answer
// (openai_response.h), with the request's log line and metrics. Used by openai_server.cpp,
// which owns routing, framing checks and the server's lifecycle. Torch-free.
// Thread-safety: handle() may run on many threads at once.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "server/http/httplib_config.h"
#include "server/http/openai_request.h"
#include "server/http/openai_response.h"

namespace flamingo {

class Engine;
class RequestBuilder;
class ChatTemplate;
class ServerMetrics;
struct OpenAIServerConfig;

// What a request is served with; a front end hands it out only while serving.
struct ServingContext {
  Engine* engine = nullptr;
  const RequestBuilder* builder = nullptr;
  const ChatTemplate* chat = nullptr;
};

// An HttpError as OpenAI's error body with its status.
void send_error(httplib::Response& res, const HttpError& e);

class OpenAIGeneration {
 public:
  // Both must outlive this object.
  OpenAIGeneration(const OpenAIServerConfig& config, ServerMetrics& metrics);
  ~OpenAIGeneration();

  // Answers one request whose body has been read. `available` gives the serving context or
  // throws HttpError (503 while loading or draining). Streaming answers set a content provider
  // that runs after this returns, on the same connection. local_port: the server's port (to
  // find the client's socket).
  void handle(ApiKind api, const httplib::Request& req, const std::string& body,
              const std::function<ServingContext()>& available, int local_port,
              httplib::Response& res);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace flamingo
