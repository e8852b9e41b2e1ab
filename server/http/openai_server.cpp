// The OpenAI-compatible HTTP front end. See openai_server.h.

#include "server/http/openai_server.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <ctime>
#include <mutex>
#include <optional>
#include <thread>

#include "model/error.h"
#include "model/tokenizer.h"
#include "server/chat_template.h"
#include "server/engine/engine.h"
#include "server/http/client_socket.h"
#include "server/http/connection_threads.h"
#include "server/http/httplib_config.h"
#include "server/http/openai_response.h"
#include "server/metrics.h"
#include "server/request_builder.h"

namespace flamingo {
namespace {

using nlohmann::json;
constexpr auto kPoll =
    std::chrono::milliseconds(20);  // how often a waiting request checks its client

// The rpc label of flamingo_requests_total{api="openai"} (ServerMetrics::kHttpRpcs).
const char* rpc_name(ApiKind api) {
  return api == ApiKind::kChat ? "chat.completions" : "completions";
}

std::string_view outcome_for_http(int status) {
  switch (status) {
    case 200:
      return "ok";
    case 400:
    case 404:
    case 413:
      return "invalid_argument";
    case 429:
      return "resource_exhausted";
    case 499:
      return "cancelled";
    case 503:
      return "unavailable";
    default:
      return "internal";
  }
}

void send_error(httplib::Response& res, const HttpError& e) {
  res.status = e.status();
  res.set_content(dump(error_json(e)), "application/json");
}

// A job's end that is not a normal finish, as an HTTP error (499: the client went away).
HttpError job_error(const JobOutcome& o) {
  switch (o.status) {
    case JobStatus::kCancelled:
      return HttpError(499, "request cancelled (the client went away)");
    case JobStatus::kDeadline:
      return HttpError(504, "deadline exceeded");
    case JobStatus::kRejected:
      return HttpError(429, o.message);
    case JobStatus::kShutdown:
      return HttpError(503, o.message.empty() ? "the server is shutting down" : o.message);
    default:
      return HttpError(500, o.message.empty() ? "internal error" : o.message);
  }
}

// Header-safe list of the ignored parameter names.
std::string header_list(const std::vector<std::string>& names) {
  std::string out;
  for (const std::string& n : names) {
    std::string clean;
    for (char c : n.substr(0, 64)) {
      if (std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.') {
        clean += c;
      }
    }
    if (clean.empty()) continue;
    if (!out.empty()) out += ", ";
    out += clean;
    if (out.size() > 512) break;
  }
  return out;
}

// One choice's output so far, guarded by Request::mu.
struct Choice {
  JobDelta pending;  // not yet streamed
  ChoiceResult result;
  JobOutcome outcome;
  bool finished = false, role_sent = false, finish_sent = false;
};

// One HTTP request's jobs (n choices) as the engine thread and the HTTP thread share them.
struct Request {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<Choice> choices;
  std::vector<int64_t> ids;
  int finished = 0;
};

class ChoiceSink final : public JobSink {
 public:
  ChoiceSink(std::shared_ptr<Request> r, size_t index) : r_(std::move(r)), index_(index) {}
  void on_delta(JobDelta d) override {
    std::lock_guard lock(r_->mu);
    add(r_->choices[index_], d);
    r_->cv.notify_all();
  }
  void on_finish(JobDelta last, JobOutcome o) override {
    std::lock_guard lock(r_->mu);
    Choice& c = r_->choices[index_];
    add(c, last);
    c.result.text = o.text;
    c.result.status = o.status;
    c.result.prompt_tokens = o.prompt_tokens;
    c.result.completion_tokens = o.completion_tokens;
    c.result.cached_prompt_tokens = o.cached_prompt_tokens;
    c.outcome = std::move(o);
    c.finished = true;
    ++r_->finished;
    r_->cv.notify_all();
  }

 private:
  static void add(Choice& c, const JobDelta& d) {
    c.pending.text += d.text;
    c.pending.token_ids.insert(c.pending.token_ids.end(), d.token_ids.begin(), d.token_ids.end());
    c.result.token_ids.insert(c.result.token_ids.end(), d.token_ids.begin(), d.token_ids.end());
    c.pending.logprobs.insert(c.pending.logprobs.end(), d.logprobs.begin(), d.logprobs.end());
    c.result.logprobs.insert(c.result.logprobs.end(), d.logprobs.begin(), d.logprobs.end());
    c.pending.top_logprobs.insert(c.pending.top_logprobs.end(), d.top_logprobs.begin(),
                                  d.top_logprobs.end());
    c.result.top_logprobs.insert(c.result.top_logprobs.end(), d.top_logprobs.begin(),
                                 d.top_logprobs.end());
  }

  std::shared_ptr<Request> r_;
  size_t index_;
};

}  // namespace

struct OpenAIServer::Impl {
  OpenAIServerConfig config;
  ServerMetrics& metrics;
  std::function<std::string()> render_metrics;
  std::unique_ptr<httplib::Server> server;
  std::thread thread;
  std::atomic<bool> listen_returned{false};
  std::atomic<int> port{0};
  std::atomic<Engine*> engine{nullptr};
  std::atomic<const RequestBuilder*> builder{nullptr};
  std::atomic<const ChatTemplate*> chat{nullptr};
  std::atomic<bool> shutting_down{false};
  std::atomic<uint64_t> next_id{1};
  int64_t created = std::time(nullptr);

  Impl(OpenAIServerConfig c, ServerMetrics& m, std::function<std::string()> r)
      : config(std::move(c)), metrics(m), render_metrics(std::move(r)) {}

  struct Context {
    Engine* engine;
    const RequestBuilder* builder;
    const ChatTemplate* chat;
  };
  Context available() const {
    if (shutting_down.load()) throw HttpError(503, "the server is shutting down");
    Context c{engine.load(), builder.load(), chat.load()};
    if (c.engine == nullptr) throw HttpError(503, "the model is loading, retry later");
    return c;
  }

  void check_model(const std::string& model) const {
    if (!model.empty() && model != config.served_model_name) {
      throw HttpError(404,
                      "the model '" + model.substr(0, 100) +
                          "' does not exist (this server serves '" + config.served_model_name +
                          "')",
                      "model", "invalid_request_error", "model_not_found");
    }
  }

  // A prepared generation: the job (built once, copied per choice) and what the response needs.
  struct Prepared {
    ApiKind api;
    OpenAIParams params;
    GenerateJob job;
  };

  Prepared prepare_chat(const std::string& body, const Context& ctx) const {
    ChatRequest cr = parse_chat_request(body, config.media);
    check_model(cr.params.model);
    std::vector<ChatPromptPart> parts;
    try {
      parts = ctx.chat->render(
          cr.messages, [&ctx](std::string_view t) { return ctx.builder->template_token(t); });
    } catch (const InvalidRequest& e) {
      throw HttpError(400, e.what(), e.field());
    }
    if (spdlog::should_log(spdlog::level::debug)) {
      spdlog::debug("chat prompt: {}", dump(json(ChatTemplate::describe(parts, [&ctx](int32_t id) {
                      return ctx.builder->tokenizer().id_to_piece(id);
                    }))));
    }
    GenerateInput in;
    std::vector<std::string> part_paths;
    for (const ChatPromptPart& p : parts) {
      switch (p.kind) {
        case ChatPromptPart::Kind::kText:
          in.prompt.push_back(PromptPart::of_text(p.text));
          part_paths.emplace_back();
          break;
        case ChatPromptPart::Kind::kImage:
          in.prompt.push_back(PromptPart::of_image(cr.images[p.image]));
          part_paths.push_back(cr.image_paths[p.image]);
          break;
        case ChatPromptPart::Kind::kToken:
          in.prompt.push_back(PromptPart::of_token(p.token));
          part_paths.emplace_back();
          break;
      }
    }
    Prepared out{ApiKind::kChat, std::move(cr.params), {}};
    out.job = build(in, out.params, part_paths, "messages", ctx);
    for (const std::string& s : ctx.chat->stop()) out.job.stop.push_back(s);
    return out;
  }

  Prepared prepare_completion(const std::string& body, const Context& ctx) const {
    CompletionRequest cr = parse_completion_request(body, config.media);
    check_model(cr.params.model);
    GenerateInput in;
    in.prompt.push_back(PromptPart::of_text(cr.prompt));
    Prepared out{ApiKind::kCompletion, std::move(cr.params), {}};
    out.job = build(in, out.params, {"prompt"}, "prompt", ctx);
    return out;
  }

  GenerateJob build(GenerateInput& in, const OpenAIParams& p,
                    const std::vector<std::string>& part_paths, const std::string& prompt_param,
                    const Context& ctx) const {
    in.max_new_tokens = p.max_tokens;
    in.sampling = p.sampling;
    for (const std::string& s : p.stop) in.stop.push_back(s);
    in.ignore_eos = p.ignore_eos;
    in.top_logprobs = p.logprobs ? p.top_logprobs : 0;
    try {
      return ctx.builder->build_generate(in);
    } catch (const InvalidRequest& e) {
      throw HttpError::from_invalid(e, part_paths, prompt_param, p.max_tokens_key);
    }
  }

  // Submits the n choices; throws HttpError (429/503) when the engine refuses one (the others
  // are cancelled).
  std::shared_ptr<Request> submit(Prepared& p, Engine* engine, const std::string& request_id) {
    auto r = std::make_shared<Request>();
    r->choices.resize(static_cast<size_t>(p.params.n));
    const uint64_t seed = p.job.sampling.seed;
    for (int32_t i = 0; i < p.params.n; ++i) {
      GenerateJob job = p.job;
      job.request_id = p.params.n > 1 ? request_id + "-" + std::to_string(i) : request_id;
      job.sampling.seed = seed + static_cast<uint64_t>(i);
      if (job.sampling.seed == 0) job.sampling.seed = 1;
      const AdmissionResult a = engine->submit(std::move(job), std::make_shared<ChoiceSink>(r, i));
      if (a.code != Admission::kAccepted) {
        for (int64_t id : r->ids) engine->cancel(id);
        throw HttpError(a.code == Admission::kShuttingDown ? 503 : 429, a.message);
      }
      std::unique_lock lock(r->mu);
      r->ids.push_back(a.id);
      if (i == 0 && p.params.n > 1) {
        // The other choices start once the first has its prompt in the KV cache (its first
        // token), so that they find it in the prefix cache instead of computing it again.
        r->cv.wait(lock, [&] {
          const Choice& c = r->choices[0];
          return c.finished || !c.result.token_ids.empty();
        });
        if (r->choices[0].finished && !openai_finish_reason(r->choices[0].outcome.status)) {
          r->choices.resize(1);  // failed (e.g. refused): answer its error, submit no more
          break;
        }
      }
    }
    return r;
  }

  void record(ApiKind api, const std::string& request_id, int status, const Request* r,
              const std::string& message) {
    metrics.record_request(rpc_name(api), outcome_for_http(status), "openai");
    if (r == nullptr) {
      spdlog::info("request {} {} -> {}: {}", request_id.empty() ? "-" : request_id, rpc_name(api),
                   status, message);
      return;
    }
    int32_t completion = 0;
    const JobOutcome& first = r->choices.front().outcome;
    for (const Choice& c : r->choices) {
      completion += c.outcome.completion_tokens;
      if (c.outcome.completion_tokens > 0) metrics.observe_ttft(c.outcome.time_to_first_token_s);
      metrics.observe_request_duration(c.outcome.total_s);
    }
    metrics.add_prompt_tokens(first.prompt_tokens);
    metrics.add_generated_tokens(completion);
    metrics.add_images(first.images);
    spdlog::info(
        "request {} {}: choices={} prompt_tokens={} cached={} completion_tokens={} images={} "
        "ttft={:.3f}s total={:.3f}s finish={} status={}",
        request_id, rpc_name(api), r->choices.size(), first.prompt_tokens,
        first.cached_prompt_tokens, completion, first.images, first.time_to_first_token_s,
        first.total_s, job_status_name(first.status), status);
  }

  void handle_generate(ApiKind api, const httplib::Request& req, const std::string& body,
                       httplib::Response& res) {
    const std::string request_id =
        (api == ApiKind::kChat ? "chatcmpl-" : "cmpl-") + std::to_string(next_id.fetch_add(1));
    res.set_header("X-Request-Id", request_id);
    std::shared_ptr<Request> r;
    Prepared p;
    Engine* engine = nullptr;
    try {
      const Context ctx = available();
      engine = ctx.engine;
      p = api == ApiKind::kChat ? prepare_chat(body, ctx) : prepare_completion(body, ctx);
      if (!p.params.ignored.empty()) {
        const std::string list = header_list(p.params.ignored);
        res.set_header("X-Ignored-Parameters", list);
        spdlog::info("request {}: ignored unknown parameters: {}", request_id, list);
      }
      r = submit(p, engine, request_id);
    } catch (const HttpError& e) {
      send_error(res, e);
      record(api, request_id, e.status(), nullptr, e.what());
      return;
    }
    const ResponseHeader h{request_id, static_cast<int64_t>(std::time(nullptr)),
                           config.served_model_name};
    const int fd = client_socket(req.remote_addr, req.remote_port, port.load());
    if (p.params.stream) {
      stream(api, h, p.params, r, engine, fd, res);
      return;
    }
    std::unique_lock lock(r->mu);
    bool cancelled = false;
    while (r->finished < static_cast<int>(r->choices.size())) {
      r->cv.wait_for(lock, kPoll);
      if (!cancelled && fd >= 0 && client_closed(fd)) {
        cancelled = true;
        for (int64_t id : r->ids) engine->cancel(id);
      }
    }
    std::vector<ChoiceResult> results;
    for (const Choice& c : r->choices) {
      if (!openai_finish_reason(c.outcome.status)) {
        const HttpError e = job_error(c.outcome);
        send_error(res, e);
        record(api, request_id, e.status(), r.get(), e.what());
        return;
      }
      results.push_back(c.result);
    }
    res.status = 200;
    res.set_content(dump(completion_json(api, h, results, engine->tokenizer(), p.params.logprobs,
                                         p.params.top_logprobs > 0)),
                    "application/json");
    record(api, request_id, 200, r.get(), "");
  }

  void stream(ApiKind api, const ResponseHeader& h, const OpenAIParams& params,
              std::shared_ptr<Request> r, Engine* engine, int fd, httplib::Response& res) {
    res.status = 200;
    res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider("text/event-stream", [this, api, h, params, r, engine, fd](
                                                              size_t, httplib::DataSink& sink) {
      const Tokenizer& tok = engine->tokenizer();
      const size_t n = r->choices.size();
      int status = 200;
      std::string error;
      bool cancelled = false;
      auto cancel = [&] {
        if (cancelled) return;
        cancelled = true;
        for (int64_t id : r->ids) engine->cancel(id);
      };
      std::unique_lock lock(r->mu);
      while (true) {
        std::string events;
        size_t done = 0;
        for (size_t i = 0; i < n; ++i) {
          Choice& c = r->choices[i];
          if (api == ApiKind::kChat && !c.role_sent) {
            c.role_sent = true;
            events += "data: " +
                      dump(chunk_json(api, h, static_cast<int32_t>(i), "", true, nullptr, nullptr,
                                      params.include_usage)) +
                      "\n\n";
          }
          const bool has_logprobs = params.logprobs && !c.pending.token_ids.empty();
          if (!c.pending.text.empty() || has_logprobs) {
            json lp = has_logprobs
                          ? logprobs_json(api, tok, c.pending.token_ids, c.pending.logprobs,
                                          c.pending.top_logprobs, params.top_logprobs > 0)
                          : json(nullptr);
            events += "data: " +
                      dump(chunk_json(api, h, static_cast<int32_t>(i), c.pending.text, false,
                                      nullptr, std::move(lp), params.include_usage)) +
                      "\n\n";
          }
          c.pending = JobDelta{};
          if (c.finished && !c.finish_sent) {
            c.finish_sent = true;
            if (const auto reason = openai_finish_reason(c.outcome.status)) {
              events += "data: " +
                        dump(chunk_json(api, h, static_cast<int32_t>(i), "", false, &*reason,
                                        nullptr, params.include_usage)) +
                        "\n\n";
            } else if (status == 200) {
              const HttpError e = job_error(c.outcome);
              status = e.status();
              error = e.what();
              events += "data: " + dump(error_json(e)) + "\n\n";
            }
          }
          done += c.finish_sent;
        }
        if (done == n) {
          if (params.include_usage && status == 200) {
            int32_t completion = 0;
            for (const Choice& c : r->choices) completion += c.outcome.completion_tokens;
            const JobOutcome& first = r->choices.front().outcome;
            events += "data: " +
                      dump(usage_chunk_json(api, h,
                                            usage_json(first.prompt_tokens, completion,
                                                       first.cached_prompt_tokens))) +
                      "\n\n";
          }
          events += "data: [DONE]\n\n";
        }
        lock.unlock();
        const bool wrote = events.empty() || sink.write(events.data(), events.size());
        if (!wrote) cancel();
        lock.lock();
        if (done == n) {
          if (cancelled) status = 499;
          record(api, h.id, status, r.get(), error);
          if (wrote) sink.done();
          return wrote;
        }
        r->cv.wait_for(lock, kPoll);
        if (fd >= 0 && client_closed(fd)) cancel();
      }
    });
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
                 has_body && !(req.method == "POST" && (req.path == "/v1/chat/completions" ||
                                                        req.path == "/v1/completions"))) {
        // httplib would read the body (a chunked one without limit) before routing.
        error =
            HttpError(404, "no such endpoint: " + req.method + " " + req.path.substr(0, 200) +
                               " (with a body: POST /v1/chat/completions, POST /v1/completions)");
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
        if (too_large) {
          send_error(res, body_too_large());
          res.set_header("Connection", "close");
          return;
        }
        handle_generate(api, req, body, res);
      });
    }
    s.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(dump(json{{"object", "list"}, {"data", json::array({model_json()})}}),
                      "application/json");
    });
    s.Get(R"(/v1/models/(.+))", [this](const httplib::Request& req, httplib::Response& res) {
      try {
        check_model(req.matches[1].str());
        res.set_content(dump(model_json()), "application/json");
      } catch (const HttpError& e) {
        send_error(res, e);
      }
    });
    s.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
      try {
        available();
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
                                    " (POST /v1/chat/completions, POST /v1/completions, "
                                    "GET /v1/models, GET /health, GET /metrics)"));
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
  const std::string where = c.host + ":" + std::to_string(c.port);
  auto server = std::make_unique<httplib::Server>();
  const size_t threads = static_cast<size_t>(std::max(1, c.threads));
  server->new_task_queue = [threads] { return new ConnectionThreads(threads); };
  server->set_keep_alive_timeout(c.keep_alive_timeout_s);
  server->set_keep_alive_max_count(static_cast<size_t>(c.keep_alive_max_requests));
  server->set_read_timeout(c.read_timeout_s, 0);
  server->set_payload_max_length(static_cast<size_t>(c.max_body_bytes));
  // SO_REUSEADDR only (httplib's default adds SO_REUSEPORT: a second server could share it).
  // The listening socket is remembered to widen its backlog after binding: httplib listens with
  // a backlog of 5, and a burst of connections then waits for SYN retransmits (1 s each).
  auto listen_fd = std::make_shared<std::atomic<int>>(-1);
  server->set_socket_options([listen_fd](auto sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    listen_fd->store(sock);
  });
  impl_->register_routes(*server);
  errno = 0;
  int bound = -1;
  if (c.port == 0) {
    bound = server->bind_to_any_port(c.host);
  } else if (server->bind_to_port(c.host, c.port)) {
    bound = c.port;
  }
  if (bound <= 0) {
    const int err = errno;
    throw Error("http: cannot bind " + where +
                (err != 0 ? std::string(": ") + std::strerror(err)
                          : std::string(": the address cannot be resolved or bound")) +
                " (is the port in use? choose another with --http-port, or 0 to turn HTTP off)");
  }
  if (const int fd = listen_fd->load(); fd >= 0) ::listen(fd, SOMAXCONN);
  httplib::Server* raw = server.get();
  impl_->listen_returned = false;
  impl_->thread = std::thread([this, raw] {
    raw->listen_after_bind();
    impl_->listen_returned = true;
  });
  while (!raw->is_running() && !impl_->listen_returned) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (impl_->listen_returned) {
    impl_->thread.join();
    throw Error("http: cannot listen on " + where + ": the listen loop ended at once");
  }
  impl_->server = std::move(server);
  impl_->port = bound;
  return bound;
}

void OpenAIServer::attach(Engine* engine, const RequestBuilder* builder, const ChatTemplate* chat) {
  impl_->chat.store(chat);
  impl_->builder.store(builder);
  impl_->engine.store(engine);
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
