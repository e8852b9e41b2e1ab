// One OpenAI-style generation request. See openai_generation.h.
#include "server/http/openai_generation.h"

#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <ctime>
#include <mutex>

#include "model/tokenizer.h"
#include "server/chat_template.h"
#include "server/engine/engine.h"
#include "server/http/client_socket.h"
#include "server/http/openai_server.h"
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
    case 401:
      return "unauthenticated";
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

void send_error(httplib::Response& res, const HttpError& e) {
  res.status = e.status();
  res.set_content(dump(error_json(e)), "application/json");
}

struct OpenAIGeneration::Impl {
  const OpenAIServerConfig& config;
  ServerMetrics& metrics;
  std::atomic<uint64_t> next_id{1};
  using Context = ServingContext;

  Impl(const OpenAIServerConfig& c, ServerMetrics& m) : config(c), metrics(m) {}

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
                       const std::function<ServingContext()>& available, int local_port,
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
    const int fd = client_socket(req.remote_addr, req.remote_port, local_port);
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
};

OpenAIGeneration::OpenAIGeneration(const OpenAIServerConfig& config, ServerMetrics& metrics)
    : impl_(std::make_unique<Impl>(config, metrics)) {}

OpenAIGeneration::~OpenAIGeneration() = default;

void OpenAIGeneration::handle(ApiKind api, const httplib::Request& req, const std::string& body,
                              const std::function<ServingContext()>& available, int local_port,
                              httplib::Response& res) {
  impl_->handle_generate(api, req, body, available, local_port, res);
}

}  // namespace flamingo
