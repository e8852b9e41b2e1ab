#include "server/proto_requests.h"

namespace flamingo {
namespace {

std::vector<PromptPart> parts(const google::protobuf::RepeatedPtrField<v1::Part>& prompt) {
  std::vector<PromptPart> out;
  out.reserve(static_cast<size_t>(prompt.size()));
  for (const v1::Part& p : prompt) {
    switch (p.kind_case()) {
      case v1::Part::kText:
        out.push_back(PromptPart::of_text(p.text()));
        break;
      case v1::Part::kImage:
        out.push_back(PromptPart::of_image(p.image().data()));
        break;
      default:
        out.push_back({});
    }
  }
  return out;
}

SamplingInput sampling(const v1::SamplingParams& s) {
  return {s.temperature(), s.top_p(), s.top_k(), s.repetition_penalty(), s.seed()};
}

}  // namespace

GenerateInput to_input(const v1::GenerateRequest& r) {
  GenerateInput in;
  in.prompt = parts(r.prompt());
  in.max_new_tokens = r.max_new_tokens();
  in.sampling = sampling(r.sampling());
  for (const std::string& s : r.stop()) in.stop.push_back(s);
  in.ignore_eos = r.ignore_eos();
  in.top_logprobs = r.top_logprobs();
  in.request_id = r.request_id();
  return in;
}

CaptionInput to_input(const v1::CaptionRequest& r) {
  CaptionInput in;
  if (r.has_image()) in.image = r.image().data();
  for (const v1::Example& ex : r.examples()) {
    CaptionExample e;
    if (ex.has_image()) e.image = ex.image().data();
    e.text = ex.text();
    in.examples.push_back(e);
  }
  in.max_new_tokens = r.max_new_tokens();
  in.sampling = sampling(r.sampling());
  return in;
}

QuestionInput to_input(const v1::QuestionRequest& r) {
  QuestionInput in;
  if (r.has_image()) in.image = r.image().data();
  in.question = r.question();
  for (const v1::QAExample& ex : r.examples()) {
    QuestionExample e;
    if (ex.has_image()) e.image = ex.image().data();
    e.question = ex.question();
    e.answer = ex.answer();
    in.examples.push_back(e);
  }
  in.max_new_tokens = r.max_new_tokens();
  in.sampling = sampling(r.sampling());
  return in;
}

ScoreInput to_input(const v1::ScoreRequest& r) {
  ScoreInput in;
  in.prompt = parts(r.prompt());
  for (const std::string& c : r.candidates()) in.candidates.push_back(c);
  return in;
}

}  // namespace flamingo
