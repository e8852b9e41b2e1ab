#include "server/grpc_service.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "server/grpc_bytes.h"
#include "server/proto_requests.h"
#include "server/proto_responses.h"
#include "server/wire_request.h"

namespace flamingo {
namespace {

using grpc::Status;
using grpc::StatusCode;

Clock::time_point steady_deadline(const grpc::CallbackServerContext* context) {
  const auto deadline = context->deadline();
  if (deadline == std::chrono::system_clock::time_point::max()) return Clock::time_point::max();
  const auto left = deadline - std::chrono::system_clock::now();
  return Clock::now() + std::chrono::duration_cast<Clock::duration>(left);
}

// What every generate-like call does around the engine: admission, cancellation, the log
// line and metrics. Subclasses turn deltas into their response.
class GenerateCall : public JobSink {
 public:
  GenerateCall(const char* rpc, FlamingoService* service, grpc::CallbackServerContext* context)
      : rpc_(rpc), service_(service), context_(context) {}

  // Builds the job with `build`, submits it. Returns a status to finish with at once, or
  // nullopt when the engine accepted it (the call then completes from on_finish).
  std::optional<Status> start(const std::function<GenerateJob(const RequestBuilder&)>& build,
                              const std::shared_ptr<JobSink>& self) {
    const Status ok = service_->available(ctx_);
    if (!ok.ok()) return ok;
    GenerateJob job;
    try {
      job = build(*ctx_.builder);
    } catch (const InvalidRequest& e) {
      return Status(StatusCode::INVALID_ARGUMENT, e.what());
    } catch (const std::exception& e) {
      return Status(StatusCode::INTERNAL, e.what());
    }
    if (job.request_id.empty()) job.request_id = service_->next_request_id();
    request_id_ = job.request_id;
    job.deadline = steady_deadline(context_);
    std::lock_guard lock(mu_);
    const AdmissionResult r = ctx_.engine->submit(std::move(job), self);
    if (r.code != Admission::kAccepted) return admission_status(r);
    id_ = r.id;
    if (cancelled_) ctx_.engine->cancel(id_);
    return std::nullopt;
  }

  void cancel() {
    std::lock_guard lock(mu_);
    cancelled_ = true;
    if (id_ != 0) ctx_.engine->cancel(id_);
  }

  void on_delta(JobDelta d) override {
    observe_tokens(d.token_ids.size());
    deliver(std::move(d));
  }

  void on_finish(JobDelta last, JobOutcome o) override {
    { std::lock_guard lock(mu_); }  // start() may still be storing the id: wait for it
    observe_tokens(last.token_ids.size());
    const Status status = job_status(o.status, o.message);
    record(status, &o);
    complete(std::move(last), o, status);  // may delete this: last statement
  }

  // Logs and counts a finished call (outcome is null when the engine never saw it).
  void record(const Status& status, const JobOutcome* o) {
    const std::string_view outcome = outcome_for_status_code(status.error_code());
    ServerMetrics& m = *service_->metrics();
    m.record_request(rpc_, outcome);
    if (o == nullptr) {
      spdlog::info("request {} {} -> {}: {}", request_id_.empty() ? "-" : request_id_, rpc_,
                   outcome, status.error_message());
      return;
    }
    m.add_prompt_tokens(o->prompt_tokens);
    m.add_generated_tokens(o->completion_tokens);
    m.add_images(o->images);
    if (o->completion_tokens > 0) m.observe_ttft(o->time_to_first_token_s);
    m.observe_request_duration(o->total_s);
    spdlog::info(
        "request {} {}: prompt_tokens={} cached={} completion_tokens={} images={} ttft={:.3f}s "
        "total={:.3f}s finish={}{}{}",
        request_id_, rpc_, o->prompt_tokens, o->cached_prompt_tokens, o->completion_tokens,
        o->images, o->time_to_first_token_s, o->total_s, job_status_name(o->status),
        status.ok() ? "" : " status=", status.ok() ? "" : std::string(outcome));
  }

 protected:
  virtual void deliver(JobDelta d) = 0;
  virtual void complete(JobDelta last, const JobOutcome& o, const Status& status) = 0;

  const std::string& request_id() const { return request_id_; }
  FlamingoService* service() const { return service_; }
  grpc::CallbackServerContext* context() const { return context_; }

 private:
  void observe_tokens(size_t n) {
    if (n == 0) return;
    const Clock::time_point now = Clock::now();
    if (has_last_) {
      service_->metrics()->observe_inter_token_latency(
          std::chrono::duration<double>(now - last_token_).count() / static_cast<double>(n));
    }
    has_last_ = true;
    last_token_ = now;
  }

  const char* rpc_;
  FlamingoService* service_;
  grpc::CallbackServerContext* context_;
  FlamingoService::Context ctx_;
  std::mutex mu_;
  int64_t id_ = 0;
  bool cancelled_ = false;
  std::string request_id_;
  Clock::time_point last_token_{};
  bool has_last_ = false;
};

// Generate, Caption, AnswerQuestion: one GenerateResponse at the end.
class UnaryGenerate final : public grpc::ServerUnaryReactor, public GenerateCall {
 public:
  UnaryGenerate(const char* rpc, FlamingoService* service, grpc::CallbackServerContext* context,
                grpc::ByteBuffer* response)
      : GenerateCall(rpc, service, context), out_(response) {}

  // Parses the request as Request, then builds the job from it with build(builder, request).
  template <class Request, class Build>
  void run(const grpc::ByteBuffer* bytes, Build build) {
    auto request = std::make_shared<Request>();
    Status parsed = service()->authorize(context());
    if (parsed.ok()) parsed = parse_request(*bytes, *request);
    if (!parsed.ok()) {
      record(parsed, nullptr);
      Finish(parsed);
      return;
    }
    run([request, build](const RequestBuilder& b) { return build(b, *request); });
  }

  void run(const std::function<GenerateJob(const RequestBuilder&)>& build) {
    // The engine holds a non-owning reference: this object lives until OnDone.
    std::shared_ptr<JobSink> self(static_cast<JobSink*>(this), [](JobSink*) {});
    if (std::optional<Status> s = start(build, self)) {
      record(*s, nullptr);
      Finish(*s);
    }
  }

  void OnCancel() override { cancel(); }
  void OnDone() override { delete this; }

 private:
  void deliver(JobDelta d) override {
    // Tokens and logprobs accumulate; the text comes whole from the outcome.
    d.text.clear();
    append_delta(response_, d);
  }
  void complete(JobDelta last, const JobOutcome& o, const Status& status) override {
    last.text.clear();
    append_delta(response_, last);
    response_->set_text(o.text);
    set_usage_and_finish(response_, o);
    response_->set_request_id(request_id());
    if (status.ok()) serialize_response(*response_, *out_);
    Finish(status);
  }

  v1::GenerateResponse message_;
  v1::GenerateResponse* response_ = &message_;
  grpc::ByteBuffer* out_;
};

// GenerateStream: deltas become chunks; while a write is in flight new deltas merge into the
// next chunk, so a slow client never holds up the engine.
class StreamGenerate final : public grpc::ServerWriteReactor<grpc::ByteBuffer>,
                             public GenerateCall {
 public:
  StreamGenerate(FlamingoService* service, grpc::CallbackServerContext* context)
      : GenerateCall("GenerateStream", service, context) {}

  void run(const grpc::ByteBuffer* bytes) {
    v1::GenerateRequest request;
    Status parsed = service()->authorize(context());
    if (parsed.ok()) parsed = parse_request(*bytes, request);
    if (!parsed.ok()) {
      record(parsed, nullptr);
      Finish(parsed);
      return;
    }
    std::shared_ptr<JobSink> self(static_cast<JobSink*>(this), [](JobSink*) {});
    if (std::optional<Status> s = start(
            [&request](const RequestBuilder& b) { return b.build_generate(to_input(request)); },
            self)) {
      record(*s, nullptr);
      Finish(*s);
    }
  }

  void OnCancel() override { cancel(); }
  void OnDone() override { delete this; }

  void OnWriteDone(bool ok) override {
    std::unique_lock lock(write_mu_);
    writing_ = false;
    if (!ok) broken_ = true;  // the client is gone; OnCancel ends the job
    pump(lock);
  }

 private:
  void deliver(JobDelta d) override {
    std::unique_lock lock(write_mu_);
    append_delta(&pending_, d);
    has_pending_ = has_pending_ || !d.text.empty() || !d.token_ids.empty();
    pump(lock);
  }
  void complete(JobDelta last, const JobOutcome& o, const Status& status) override {
    std::unique_lock lock(write_mu_);
    append_delta(&pending_, last);
    if (status.ok()) {
      set_usage_and_finish(&pending_, o);
      has_pending_ = true;  // the last chunk always goes out
    } else {
      has_pending_ = false;
    }
    status_ = status;
    done_ = true;
    pump(lock);
  }
  // Called with write_mu_ held: starts the next write, or finishes once everything is out.
  // gRPC is called after unlocking (Finish may delete this).
  void pump(std::unique_lock<std::mutex>& lock) {
    if (writing_ || finished_) return;
    if (has_pending_ && !broken_) {
      serialize_response(pending_, current_);
      pending_.Clear();
      has_pending_ = false;
      writing_ = true;
      lock.unlock();
      StartWrite(&current_);
      return;
    }
    if (done_) {
      finished_ = true;
      const Status s =
          broken_ && status_.ok() ? Status(StatusCode::CANCELLED, "client went away") : status_;
      lock.unlock();
      Finish(s);
    }
  }

  std::mutex write_mu_;
  v1::GenerateChunk pending_;
  grpc::ByteBuffer current_;  // the chunk being written
  bool has_pending_ = false, writing_ = false, done_ = false, finished_ = false, broken_ = false;
  Status status_;
};

// Score: one engine job, completed by its callback.
class ScoreCall final : public grpc::ServerUnaryReactor {
 public:
  ScoreCall(FlamingoService* service, grpc::CallbackServerContext* context,
            grpc::ByteBuffer* response)
      : service_(service), context_(context), out_(response) {}

  void run(const grpc::ByteBuffer* bytes) {
    FlamingoService::Context ctx;
    v1::ScoreRequest request;
    Status s = service_->authorize(context_);
    if (s.ok()) s = parse_request(*bytes, request);
    if (s.ok()) s = service_->available(ctx);
    ScoreJob job;
    if (s.ok()) {
      try {
        job = ctx.builder->build_score(to_input(request));
      } catch (const InvalidRequest& e) {
        s = Status(StatusCode::INVALID_ARGUMENT, e.what());
      } catch (const std::exception& e) {
        s = Status(StatusCode::INTERNAL, e.what());
      }
    }
    if (!s.ok()) return finish(s, nullptr);
    request_id_ = job.request_id.empty() ? service_->next_request_id() : job.request_id;
    job.request_id = request_id_;
    job.deadline = steady_deadline(context_);
    std::lock_guard lock(mu_);
    engine_ = ctx.engine;
    const AdmissionResult r = engine_->submit_score(std::move(job), [this](ScoreOutcome o) {
      { std::lock_guard lock(mu_); }  // run() may still be storing the id: wait for it
      v1::ScoreResponse response;
      for (double lp : o.logprobs) response.add_logprobs(lp);
      const Status status =
          o.status == JobStatus::kStop ? Status::OK : job_status(o.status, o.message);
      if (status.ok()) serialize_response(response, *out_);
      finish(status, &o);
    });
    if (r.code != Admission::kAccepted) return finish(admission_status(r), nullptr);
    id_ = r.id;
    if (cancelled_) engine_->cancel(id_);
  }

  void OnCancel() override {
    std::lock_guard lock(mu_);
    cancelled_ = true;
    if (id_ != 0) engine_->cancel(id_);
  }
  void OnDone() override { delete this; }

 private:
  void finish(const Status& status, const ScoreOutcome* o) {
    const std::string_view outcome = outcome_for_status_code(status.error_code());
    service_->metrics()->record_request("Score", outcome);
    if (o != nullptr) {
      service_->metrics()->add_prompt_tokens(o->prompt_tokens);
      service_->metrics()->observe_request_duration(o->total_s);
      spdlog::info(
          "request {} Score: prompt_tokens={} candidates={} images={} computed_tokens={} steps={} "
          "total={:.3f}s{}{}",
          request_id_, o->prompt_tokens, o->logprobs.size(), o->images, o->computed_tokens,
          o->steps, o->total_s,
          status.ok() ? "" : " status=", status.ok() ? "" : std::string(outcome));
    } else {
      spdlog::info("request {} Score -> {}: {}", request_id_.empty() ? "-" : request_id_, outcome,
                   status.error_message());
    }
    Finish(status);
  }

  FlamingoService* service_;
  grpc::CallbackServerContext* context_;
  grpc::ByteBuffer* out_;
  Engine* engine_ = nullptr;
  std::mutex mu_;
  int64_t id_ = 0;
  bool cancelled_ = false;
  std::string request_id_;
};

}  // namespace

FlamingoService::FlamingoService(ServerMetrics& metrics, const ApiKeys& keys)
    : metrics_(metrics), keys_(keys) {}

grpc::Status FlamingoService::authorize(const grpc::CallbackServerContext* context) const {
  if (!keys_.enabled()) return Status::OK;
  const auto& md = context->client_metadata();
  const auto it = md.find("authorization");
  const std::string_view value =
      it == md.end() ? std::string_view() : std::string_view(it->second.data(), it->second.size());
  if (keys_.accepts(value)) return Status::OK;
  return Status(StatusCode::UNAUTHENTICATED, kApiKeyRequired);
}

void FlamingoService::attach(Engine* engine, const RequestBuilder* builder) {
  builder_.store(builder);
  engine_.store(engine);
}

void FlamingoService::begin_shutdown() { shutting_down_.store(true); }

grpc::Status FlamingoService::available(Context& out) const {
  if (shutting_down_.load()) return Status(StatusCode::UNAVAILABLE, "server is shutting down");
  if (clip_only_.load()) {
    return Status(StatusCode::FAILED_PRECONDITION,
                  "the served model is a CLIP ('" + clip_only_dir_ +
                      "', kind clip): it answers Embed and Classify; Generate, GenerateStream, "
                      "Caption, AnswerQuestion and Score need an IDEFICS model (kind idefics)");
  }
  out.engine = engine_.load();
  out.builder = builder_.load();
  out.metrics = &metrics_;
  if (out.engine == nullptr) return Status(StatusCode::UNAVAILABLE, "model loading, retry later");
  return Status::OK;
}

void FlamingoService::serve_clip_only(std::string model_dir) {
  clip_only_dir_ = std::move(model_dir);
  clip_only_.store(true);
}

std::string FlamingoService::next_request_id() {
  return "req-" + std::to_string(next_id_.fetch_add(1));
}

ServerMetrics* FlamingoService::metrics() { return &metrics_; }

grpc::ServerUnaryReactor* FlamingoService::Generate(grpc::CallbackServerContext* context,
                                                    const grpc::ByteBuffer* request,
                                                    grpc::ByteBuffer* response) {
  auto* call = new UnaryGenerate("Generate", this, context, response);
  call->run<v1::GenerateRequest>(request,
                                 [](const RequestBuilder& b, const v1::GenerateRequest& r) {
                                   return b.build_generate(to_input(r));
                                 });
  return call;
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* FlamingoService::GenerateStream(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* request) {
  auto* call = new StreamGenerate(this, context);
  call->run(request);
  return call;
}

grpc::ServerUnaryReactor* FlamingoService::Caption(grpc::CallbackServerContext* context,
                                                   const grpc::ByteBuffer* request,
                                                   grpc::ByteBuffer* response) {
  auto* call = new UnaryGenerate("Caption", this, context, response);
  call->run<v1::CaptionRequest>(request, [](const RequestBuilder& b, const v1::CaptionRequest& r) {
    return b.build_caption(to_input(r));
  });
  return call;
}

grpc::ServerUnaryReactor* FlamingoService::AnswerQuestion(grpc::CallbackServerContext* context,
                                                          const grpc::ByteBuffer* request,
                                                          grpc::ByteBuffer* response) {
  auto* call = new UnaryGenerate("AnswerQuestion", this, context, response);
  call->run<v1::QuestionRequest>(request,
                                 [](const RequestBuilder& b, const v1::QuestionRequest& r) {
                                   return b.build_question(to_input(r));
                                 });
  return call;
}

grpc::ServerUnaryReactor* FlamingoService::Score(grpc::CallbackServerContext* context,
                                                 const grpc::ByteBuffer* request,
                                                 grpc::ByteBuffer* response) {
  auto* call = new ScoreCall(this, context, response);
  call->run(request);
  return call;
}

grpc::ServerUnaryReactor* FlamingoService::GetModelInfo(grpc::CallbackServerContext* context,
                                                        const grpc::ByteBuffer* request,
                                                        grpc::ByteBuffer* out) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  Context ctx;
  v1::ModelInfoRequest parsed;
  Status s = authorize(context);
  if (s.ok()) s = parse_request(*request, parsed);
  v1::ModelInfo info;
  if (s.ok() && clip_only_.load()) {
    if (shutting_down_.load()) s = Status(StatusCode::UNAVAILABLE, "server is shutting down");
    if (s.ok()) {
      fill_clip_info(info);
      serialize_response(info, *out);
    }
    metrics_.record_request("GetModelInfo", outcome_for_status_code(s.error_code()));
    reactor->Finish(s);
    return reactor;
  }
  if (s.ok()) s = available(ctx);
  v1::ModelInfo* response = &info;
  if (s.ok()) {
    response->set_kind("idefics");
    fill_clip_info(info);
    const ModelDescription& d = ctx.engine->description();
    response->set_family(d.family);
    response->set_model_dir(d.model_dir);
    response->set_hidden_size(d.hidden_size);
    response->set_num_layers(d.num_layers);
    response->set_num_cross_layers(d.num_cross_layers);
    response->set_vocab_size(d.vocab_size);
    response->set_image_size(d.image_size);
    response->set_latents_per_image(d.latents_per_image);
    response->set_dtype(d.dtype);
    response->set_weights(d.weights);
    response->set_kernel_isa(d.kernel_isa);
    response->set_context_length(d.context_length);
    fill_limits(response->mutable_limits(), ctx.builder->limits(),
                ctx.builder->max_prompt_tokens());
    const EngineStats st = ctx.engine->stats();
    response->set_kv_blocks_total(d.kv_blocks_total);
    response->set_kv_blocks_free(st.kv_blocks_free);
    response->set_kv_block_size(d.kv_block_size);
    serialize_response(info, *out);
  }
  metrics_.record_request("GetModelInfo", outcome_for_status_code(s.error_code()));
  reactor->Finish(s);
  return reactor;
}

}  // namespace flamingo
