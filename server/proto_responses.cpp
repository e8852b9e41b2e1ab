#include "server/proto_responses.h"

namespace flamingo {

using grpc::Status;
using grpc::StatusCode;

v1::FinishReason finish_reason(JobStatus s) {
  switch (s) {
    case JobStatus::kLength:
      return v1::LENGTH;
    case JobStatus::kStop:
      return v1::STOP;
    default:
      return v1::CANCELLED;
  }
}

Status job_status(JobStatus s, const std::string& message) {
  switch (s) {
    case JobStatus::kLength:
    case JobStatus::kStop:
      return Status::OK;
    case JobStatus::kCancelled:
      return Status(StatusCode::CANCELLED, "request cancelled");
    case JobStatus::kDeadline:
      return Status(StatusCode::DEADLINE_EXCEEDED, "deadline exceeded");
    case JobStatus::kRejected:
      return Status(StatusCode::RESOURCE_EXHAUSTED, message);
    case JobStatus::kShutdown:
      return Status(StatusCode::UNAVAILABLE, message);
    case JobStatus::kFailed:
      return Status(StatusCode::INTERNAL, message);
  }
  return Status(StatusCode::INTERNAL, "unknown job status");
}

Status admission_status(const AdmissionResult& r) {
  return Status(
      r.code == Admission::kShuttingDown ? StatusCode::UNAVAILABLE : StatusCode::RESOURCE_EXHAUSTED,
      r.message);
}

void add_top(google::protobuf::RepeatedPtrField<v1::TopLogprobs>* out,
             const std::vector<std::pair<int32_t, double>>& top) {
  v1::TopLogprobs* t = out->Add();
  for (const auto& [id, lp] : top) {
    t->add_token_ids(id);
    t->add_logprobs(static_cast<float>(lp));
  }
}

void fill_limits(v1::ServerLimits* out, const ServerLimits& l, int64_t max_prompt_tokens) {
  out->set_max_images_per_request(l.max_images_per_request);
  out->set_max_image_bytes(l.max_image_bytes);
  out->set_max_image_pixels(l.max_image_pixels);
  out->set_max_prompt_tokens(static_cast<int32_t>(max_prompt_tokens));
  out->set_max_new_tokens(l.max_new_tokens);
  out->set_max_queued_requests(l.max_queued_requests);
  out->set_max_running_requests(l.max_running_requests);
  out->set_max_stop_strings(l.max_stop_strings);
  out->set_max_stop_string_bytes(l.max_stop_string_bytes);
  out->set_max_top_logprobs(l.max_top_logprobs);
  out->set_max_candidates(l.max_candidates);
  out->set_max_text_bytes(l.max_text_bytes);
  out->set_default_max_new_tokens(l.default_max_new_tokens);
}

}  // namespace flamingo
