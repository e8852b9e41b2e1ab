// Engine outcomes -> flamingo.v1 responses and gRPC statuses: finish reasons, status codes
// for job ends and admission refusals, deltas and usage into GenerateResponse/GenerateChunk,
// the limits of GetModelInfo. The counterpart of proto_requests.h; proto types stay in these
// files and grpc_service.
#pragma once

#include <grpcpp/grpcpp.h>

#include <string>
#include <utility>
#include <vector>

#include "flamingo/v1/flamingo.pb.h"
#include "server/engine/engine.h"
#include "server/limits.h"

namespace flamingo {

v1::FinishReason finish_reason(JobStatus s);  // LENGTH, STOP, else CANCELLED
// OK for kLength/kStop; CANCELLED, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED (rejected),
// UNAVAILABLE (shutdown), INTERNAL (failed) with `message`.
grpc::Status job_status(JobStatus s, const std::string& message);
// UNAVAILABLE while shutting down, else RESOURCE_EXHAUSTED, with the admission's message.
grpc::Status admission_status(const AdmissionResult& r);
void add_top(google::protobuf::RepeatedPtrField<v1::TopLogprobs>* out,
             const std::vector<std::pair<int32_t, double>>& top);
void fill_limits(v1::ServerLimits* out, const ServerLimits& l, int64_t max_prompt_tokens);

// Message: GenerateResponse or GenerateChunk.
template <typename Message>
void append_delta(Message* m, const JobDelta& d) {
  m->mutable_text()->append(d.text);
  for (int32_t t : d.token_ids) m->add_token_ids(t);
  for (float lp : d.logprobs) m->add_logprobs(lp);
  for (const auto& top : d.top_logprobs) add_top(m->mutable_top_logprobs(), top);
}

template <typename Message>
void set_usage_and_finish(Message* m, const JobOutcome& o) {
  m->set_finish_reason(finish_reason(o.status));
  m->mutable_usage()->set_prompt_tokens(o.prompt_tokens);
  m->mutable_usage()->set_completion_tokens(o.completion_tokens);
  m->mutable_usage()->set_images(o.images);
  m->set_seed(o.seed);
}

}  // namespace flamingo
