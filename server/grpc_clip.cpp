// flamingo.v1.Flamingo's CLIP methods (Embed, Classify) and the CLIP part of GetModelInfo:
// validation by ClipRequestBuilder, one ClipEngine job per call, completed by its callback.
#include <spdlog/spdlog.h>

#include <cmath>
#include <string>

#include "server/grpc_bytes.h"
#include "server/grpc_service.h"
#include "server/proto_requests.h"

namespace flamingo {
namespace {

using grpc::Status;
using grpc::StatusCode;

ImageRef image_ref(const v1::Image& image, const std::string& field) {
  return {image.data(), field};
}

// Softmax over labels of logit_scale x cosine (the embeddings are unit vectors).
std::vector<float> label_probabilities(const EmbedOutcome& o, double logit_scale) {
  const std::vector<float>& image = o.image_embeddings.at(0);
  std::vector<double> logits;
  double top = -INFINITY;
  for (const std::vector<float>& text : o.text_embeddings) {
    double dot = 0;
    for (size_t i = 0; i < image.size(); ++i) dot += double{image[i]} * text[i];
    logits.push_back(logit_scale * dot);
    top = std::max(top, logits.back());
  }
  double sum = 0;
  for (double& l : logits) sum += (l = std::exp(l - top));
  std::vector<float> p;
  for (double l : logits) p.push_back(static_cast<float>(l / sum));
  return p;
}

// One Embed or Classify call: build, submit, answer from the engine's callback.
template <class Request, class Response>
class ClipCall final : public grpc::ServerUnaryReactor {
 public:
  using Build = std::function<EmbedJob(const ClipRequestBuilder&, const Request&)>;
  // The outcome, the engine and the job's truncated text indices -> the response.
  using Fill = std::function<void(const EmbedOutcome&, const ClipEngine&,
                                  const std::vector<int32_t>&, Response&)>;

  ClipCall(const char* rpc, FlamingoService* service, grpc::CallbackServerContext* context,
           grpc::ByteBuffer* out)
      : rpc_(rpc), service_(service), context_(context), out_(out) {}

  void run(const grpc::ByteBuffer* bytes, const Build& build, Fill fill) {
    FlamingoService::ClipContext ctx;
    Request request;
    Status s = service_->authorize(context_);
    if (s.ok()) s = parse_request(*bytes, request);
    if (s.ok()) s = service_->clip_available(ctx);
    EmbedJob job;
    if (s.ok()) {
      try {
        job = build(*ctx.builder, request);
      } catch (const InvalidRequest& e) {
        s = Status(StatusCode::INVALID_ARGUMENT, e.what());
      } catch (const std::exception& e) {
        s = Status(StatusCode::INTERNAL, e.what());
      }
    }
    if (!s.ok()) return finish(s);
    ClipEngine* engine = ctx.engine;
    std::vector<int32_t> truncated = job.truncated;
    engine->submit(std::move(job), [this, engine, truncated = std::move(truncated),
                                    fill = std::move(fill)](EmbedOutcome o) {
      if (!o.ok) return finish(Status(StatusCode::INTERNAL, "clip engine: " + o.message));
      Response response;
      fill(o, *engine, truncated, response);
      serialize_response(response, *out_);
      finish(Status::OK);
    });
  }

  void OnDone() override { delete this; }

 private:
  void finish(const Status& s) {
    service_->metrics()->record_request(rpc_, outcome_for_status_code(s.error_code()));
    if (!s.ok())
      spdlog::info("{}: {}: {}", rpc_, static_cast<int>(s.error_code()), s.error_message());
    Finish(s);
  }

  const char* rpc_;
  FlamingoService* service_;
  grpc::CallbackServerContext* context_;
  grpc::ByteBuffer* out_;
};

void add_embedding(const std::vector<float>& values, v1::Embedding* e) {
  e->mutable_values()->Add(values.begin(), values.end());
}

}  // namespace

void FlamingoService::attach_clip(ClipEngine* engine, const ClipRequestBuilder* builder) {
  clip_builder_.store(builder);
  clip_.store(engine);
}

grpc::Status FlamingoService::clip_available(ClipContext& out) const {
  if (shutting_down_.load()) return Status(StatusCode::UNAVAILABLE, "server is shutting down");
  out.engine = clip_.load();
  out.builder = clip_builder_.load();
  if (out.engine != nullptr) return Status::OK;
  if (engine_.load() != nullptr) {
    return Status(StatusCode::FAILED_PRECONDITION,
                  "the served model is an IDEFICS (kind idefics), which has no text tower for "
                  "Embed and Classify; start the server with --clip-model DIR (an HF CLIPModel "
                  "folder) to serve a CLIP beside it");
  }
  return Status(StatusCode::UNAVAILABLE, "model loading, retry later");
}

void FlamingoService::fill_clip_info(v1::ModelInfo& info) const {
  const ClipEngine* engine = clip_.load();
  const ClipRequestBuilder* builder = clip_builder_.load();
  if (engine == nullptr || builder == nullptr) return;
  const ClipDescription& d = engine->description();
  v1::ClipInfo* c = info.mutable_clip();
  c->set_model_dir(d.model_dir);
  c->set_projection_dim(d.projection_dim);
  c->set_image_size(d.image_size);
  c->set_context_length(d.context_length);
  c->set_logit_scale(d.logit_scale);
  c->set_max_images(builder->limits().max_embed_images);
  c->set_max_texts(builder->limits().max_embed_texts);
  c->set_max_labels(builder->limits().max_labels);
  if (clip_only_.load()) {
    info.set_kind("clip");
    info.set_family("clip");
    info.set_model_dir(d.model_dir);
    info.set_image_size(d.image_size);
    info.set_dtype(d.dtype);
    info.set_context_length(d.context_length);
  }
}

grpc::ServerUnaryReactor* FlamingoService::Embed(grpc::CallbackServerContext* context,
                                                 const grpc::ByteBuffer* request,
                                                 grpc::ByteBuffer* response) {
  auto* call = new ClipCall<v1::EmbedRequest, v1::EmbedResponse>("Embed", this, context, response);
  call->run(
      request,
      [](const ClipRequestBuilder& b, const v1::EmbedRequest& r) {
        EmbedInput in;
        for (int i = 0; i < r.images_size(); ++i) {
          in.images.push_back(image_ref(r.images(i), "images[" + std::to_string(i) + "]"));
        }
        for (const std::string& t : r.texts()) in.texts.push_back(t);
        return b.build_embed(in);
      },
      [](const EmbedOutcome& o, const ClipEngine&, const std::vector<int32_t>& truncated,
         v1::EmbedResponse& out) {
        out.mutable_truncated_texts()->Add(truncated.begin(), truncated.end());
        for (const auto& e : o.image_embeddings) add_embedding(e, out.add_image_embeddings());
        for (const auto& e : o.text_embeddings) add_embedding(e, out.add_text_embeddings());
      });
  return call;
}

grpc::ServerUnaryReactor* FlamingoService::Classify(grpc::CallbackServerContext* context,
                                                    const grpc::ByteBuffer* request,
                                                    grpc::ByteBuffer* response) {
  auto* call =
      new ClipCall<v1::ClassifyRequest, v1::ClassifyResponse>("Classify", this, context, response);
  call->run(
      request,
      [](const ClipRequestBuilder& b, const v1::ClassifyRequest& r) {
        ClassifyInput in;
        in.image = image_ref(r.image(), "image");
        for (const std::string& l : r.labels()) in.labels.push_back(l);
        in.text_template = r.template_();
        return b.build_classify(in);
      },
      [](const EmbedOutcome& o, const ClipEngine& engine, const std::vector<int32_t>& truncated,
         v1::ClassifyResponse& out) {
        out.mutable_truncated_labels()->Add(truncated.begin(), truncated.end());
        for (float p : label_probabilities(o, engine.description().logit_scale)) {
          out.add_probabilities(p);
        }
      });
  return call;
}

}  // namespace flamingo
