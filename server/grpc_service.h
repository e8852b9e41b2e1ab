// The flamingo.v1.Flamingo service on gRPC's callback API, its methods taking raw request bytes
// (parsed by server/wire_request: bytes that are not a valid request answer INVALID_ARGUMENT
// naming what was wrong, where gRPC's typed handlers answered UNIMPLEMENTED with no message):
// each call validates and builds its job on the handler thread (RequestBuilder), submits it to the
// Engine and completes from the engine thread through a reactor (unary, or a write reactor for
// GenerateStream). Client cancellation and deadlines reach the engine (cancel / job deadline);
// admission failures answer RESOURCE_EXHAUSTED at once. Until attach() the model is loading and
// calls answer UNAVAILABLE; after begin_shutdown() too. One log line and metrics per finished call.
//
// Thread-safety: all methods are thread-safe; attach() and begin_shutdown() publish atomically.
// Torch-free.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "flamingo/v1/flamingo.grpc.pb.h"
#include "server/api_keys.h"
#include "server/clip/clip_requests.h"
#include "server/engine/engine.h"
#include "server/metrics.h"
#include "server/request_builder.h"

namespace flamingo {

// Every method of flamingo.v1.Flamingo as a raw (ByteBuffer) callback method.
using RawFlamingoService = v1::Flamingo::WithRawCallbackMethod_Generate<
    v1::Flamingo::WithRawCallbackMethod_GenerateStream<v1::Flamingo::WithRawCallbackMethod_Caption<
        v1::Flamingo::WithRawCallbackMethod_AnswerQuestion<
            v1::Flamingo::WithRawCallbackMethod_Score<
                v1::Flamingo::WithRawCallbackMethod_GetModelInfo<
                    v1::Flamingo::WithRawCallbackMethod_Embed<
                        v1::Flamingo::WithRawCallbackMethod_Classify<v1::Flamingo::Service>>>>>>>>;

class FlamingoService final : public RawFlamingoService {
 public:
  // keys: the API keys calls must present (none: every call is let in); outlives the service.
  FlamingoService(ServerMetrics& metrics, const ApiKeys& keys);

  // The engine is loaded and warm: calls are served from now on. Both must outlive the
  // service's calls (the server is shut down before they are destroyed).
  void attach(Engine* engine, const RequestBuilder* builder);
  // A CLIP is loaded (--clip-model, or a CLIP --model): Embed and Classify are served. Both
  // must outlive the service's calls.
  void attach_clip(ClipEngine* engine, const ClipRequestBuilder* builder);
  // --model is a CLIP: the IDEFICS methods answer FAILED_PRECONDITION naming the model kind.
  void serve_clip_only(std::string model_dir);
  // New calls answer UNAVAILABLE; calls already accepted run to the end.
  void begin_shutdown();

  grpc::ServerUnaryReactor* Generate(grpc::CallbackServerContext* context,
                                     const grpc::ByteBuffer* request,
                                     grpc::ByteBuffer* response) override;
  grpc::ServerWriteReactor<grpc::ByteBuffer>* GenerateStream(
      grpc::CallbackServerContext* context, const grpc::ByteBuffer* request) override;
  grpc::ServerUnaryReactor* Caption(grpc::CallbackServerContext* context,
                                    const grpc::ByteBuffer* request,
                                    grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* AnswerQuestion(grpc::CallbackServerContext* context,
                                           const grpc::ByteBuffer* request,
                                           grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* Score(grpc::CallbackServerContext* context,
                                  const grpc::ByteBuffer* request,
                                  grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* GetModelInfo(grpc::CallbackServerContext* context,
                                         const grpc::ByteBuffer* request,
                                         grpc::ByteBuffer* response) override;
  // grpc_clip.cpp
  grpc::ServerUnaryReactor* Embed(grpc::CallbackServerContext* context,
                                  const grpc::ByteBuffer* request,
                                  grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* Classify(grpc::CallbackServerContext* context,
                                     const grpc::ByteBuffer* request,
                                     grpc::ByteBuffer* response) override;

  // Shared by the reactors (public for them; not an API).
  struct Context {
    Engine* engine = nullptr;
    const RequestBuilder* builder = nullptr;
    ServerMetrics* metrics = nullptr;
  };
  // The engine and builder when serving, else a status to answer with.
  grpc::Status available(Context& out) const;
  struct ClipContext {
    ClipEngine* engine = nullptr;
    const ClipRequestBuilder* builder = nullptr;
  };
  // The CLIP engine when one is served, else a status to answer with.
  grpc::Status clip_available(ClipContext& out) const;
  // ModelInfo.clip (when a CLIP is served) and, for a CLIP --model, kind and the fields it has.
  void fill_clip_info(v1::ModelInfo& info) const;
  // OK, or UNAUTHENTICATED when API keys are set and the call's "authorization" metadata does
  // not hold one.
  grpc::Status authorize(const grpc::CallbackServerContext* context) const;
  std::string next_request_id();
  ServerMetrics* metrics();

 private:
  ServerMetrics& metrics_;
  const ApiKeys& keys_;
  std::atomic<Engine*> engine_{nullptr};
  std::atomic<const RequestBuilder*> builder_{nullptr};
  std::atomic<ClipEngine*> clip_{nullptr};
  std::atomic<const ClipRequestBuilder*> clip_builder_{nullptr};
  std::atomic<bool> clip_only_{false};
  std::string clip_only_dir_;  // set before clip_only_
  std::atomic<bool> shutting_down_{false};
  std::atomic<uint64_t> next_id_{1};
};

}  // namespace flamingo
