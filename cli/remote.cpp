#include "cli/remote.h"

#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/cli_request.h"
#include "flamingo/v1/flamingo.grpc.pb.h"
#include "model/error.h"

namespace flamingo::cli {
namespace {

namespace pb = ::flamingo::v1;
using nlohmann::json;

std::string status_code_name(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return "OK";
    case grpc::StatusCode::CANCELLED:
      return "CANCELLED";
    case grpc::StatusCode::UNKNOWN:
      return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND:
      return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS:
      return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED:
      return "PERMISSION_DENIED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED:
      return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE:
      return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED:
      return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL:
      return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE:
      return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS:
      return "DATA_LOSS";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "UNAUTHENTICATED";
    default:
      return "STATUS_" + std::to_string(static_cast<int>(code));
  }
}

// Error lines stay one line: transport messages may span several.
std::string one_line(std::string s) {
  for (char& c : s) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  while (!s.empty() && s.back() == ' ') s.pop_back();
  return s;
}

// The local CLI's prompt rule (CliPrompt): each "<image>" in --prompt takes the next --image
// file, the text between markers becomes text parts, empty pieces are dropped.
void fill_prompt(const CliArgs& a, google::protobuf::RepeatedPtrField<pb::Part>* parts) {
  const CliPrompt prompt(a);
  for (const PromptPart& p : prompt.parts()) {
    if (p.kind == PromptPart::Kind::kText) {
      parts->Add()->set_text(std::string(p.text));
    } else {
      parts->Add()->mutable_image()->set_data(std::string(p.image));
    }
  }
}

void fill_sampling(const CliArgs& a, pb::SamplingParams* s) {
  s->set_temperature(a.temperature);
  s->set_top_p(a.top_p);
  s->set_top_k(a.top_k);
  s->set_repetition_penalty(a.repetition_penalty);
  s->set_seed(a.seed ? *a.seed : 0);  // 0: the server picks one and returns it
}

int32_t max_new_tokens(const CliArgs& a) { return a.max_new_tokens_given ? a.max_new_tokens : 0; }

const char* finish_reason_name(pb::FinishReason r) {
  switch (r) {
    case pb::LENGTH:
      return "length";
    case pb::STOP:
      return "stop";
    case pb::CANCELLED:
      return "cancelled";
    default:
      return "unspecified";
  }
}

json number_or_null(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

// The local generate --json fields that the server returns, plus usage and request_id.
json response_json(const pb::GenerateResponse& r, bool with_top_logprobs) {
  json out;
  out["text"] = r.text();
  out["token_ids"] = std::vector<int32_t>(r.token_ids().begin(), r.token_ids().end());
  json lp = json::array();
  for (float v : r.logprobs()) lp.push_back(number_or_null(v));
  out["logprobs"] = lp;
  out["finish_reason"] = finish_reason_name(r.finish_reason());
  out["seed"] = r.seed();
  out["usage"] = {{"prompt_tokens", r.usage().prompt_tokens()},
                  {"completion_tokens", r.usage().completion_tokens()},
                  {"images", r.usage().images()}};
  if (!r.request_id().empty()) out["request_id"] = r.request_id();
  if (with_top_logprobs) {
    json top = json::array();
    for (const pb::TopLogprobs& step : r.top_logprobs()) {
      json s = {{"token_ids", json::array()}, {"logprobs", json::array()}};
      for (int32_t id : step.token_ids()) s["token_ids"].push_back(id);
      for (float v : step.logprobs()) s["logprobs"].push_back(number_or_null(v));
      top.push_back(s);
    }
    out["top_logprobs"] = top;
  }
  return out;
}

void print_response(const CliArgs& a, const pb::GenerateResponse& r, std::ostream& out) {
  if (a.json) {
    out << response_json(r, a.top_logprobs > 0).dump() << "\n";
  } else {
    out << r.text() << "\n";
  }
}

std::string read_pem(const std::string& flag, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(flag + ": cannot read '" + path + "'");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (text.find("-----BEGIN ") == std::string::npos) {
    throw Error(flag + ": '" + path + "' is not a PEM file (no -----BEGIN line)");
  }
  return text;
}

// Plaintext, or TLS with --tls / --tls-ca (and a client certificate with --tls-cert/--tls-key).
std::shared_ptr<grpc::ChannelCredentials> credentials(const CliArgs& a) {
  if (!a.tls) return grpc::InsecureChannelCredentials();
  grpc::SslCredentialsOptions o;
  if (!a.tls_ca.empty()) o.pem_root_certs = read_pem("--tls-ca", a.tls_ca);
  if (!a.tls_cert.empty()) {
    o.pem_cert_chain = read_pem("--tls-cert", a.tls_cert);
    o.pem_private_key = read_pem("--tls-key", a.tls_key);
  }
  return grpc::SslCredentials(o);
}

class RemoteCall {
 public:
  explicit RemoteCall(const CliArgs& a) : a_(a) {
    grpc::ChannelArguments ch;
    ch.SetMaxReceiveMessageSize(-1);  // long generations with top_logprobs exceed 4 MiB
    stub_ = pb::Flamingo::NewStub(grpc::CreateCustomChannel(a.server, credentials(a), ch));
  }

  // The deadline (--timeout) and, when FLAMINGO_API_KEY is set, "authorization: Bearer KEY"
  // (servers started with API keys refuse calls without one).
  void prepare_context(grpc::ClientContext* ctx) const {
    if (const char* key = std::getenv("FLAMINGO_API_KEY"); key != nullptr && *key != '\0') {
      ctx->AddMetadata("authorization", std::string("Bearer ") + key);
    }
    if (a_.timeout_seconds > 0) {
      ctx->set_deadline(std::chrono::system_clock::now() +
                        std::chrono::duration_cast<std::chrono::system_clock::duration>(
                            std::chrono::duration<double>(a_.timeout_seconds)));
    }
  }

  grpc::Status generate(std::ostream& out) {
    pb::GenerateRequest req;
    fill_prompt(a_, req.mutable_prompt());
    req.set_max_new_tokens(max_new_tokens(a_));
    fill_sampling(a_, req.mutable_sampling());
    for (const std::string& s : a_.stop) req.add_stop(s);
    req.set_ignore_eos(a_.ignore_eos);
    req.set_top_logprobs(a_.top_logprobs);
    req.set_request_id(a_.request_id);
    grpc::ClientContext ctx;
    prepare_context(&ctx);
    if (a_.stream) return generate_stream(req, &ctx, out);
    pb::GenerateResponse resp;
    grpc::Status st = stub_->Generate(&ctx, req, &resp);
    if (st.ok()) print_response(a_, resp, out);
    return st;
  }

  grpc::Status caption(std::ostream& out) {
    pb::CaptionRequest req;
    req.mutable_image()->set_data(read_file_bytes("--image", a_.images.at(0)));
    for (const CliExample& e : a_.examples) {
      pb::Example* x = req.add_examples();
      x->mutable_image()->set_data(read_file_bytes("--example", e.image));
      x->set_text(e.text);
    }
    req.set_max_new_tokens(max_new_tokens(a_));
    fill_sampling(a_, req.mutable_sampling());
    grpc::ClientContext ctx;
    prepare_context(&ctx);
    pb::GenerateResponse resp;
    grpc::Status st = stub_->Caption(&ctx, req, &resp);
    if (st.ok()) print_response(a_, resp, out);
    return st;
  }

  grpc::Status ask(std::ostream& out) {
    pb::QuestionRequest req;
    req.mutable_image()->set_data(read_file_bytes("--image", a_.images.at(0)));
    req.set_question(a_.question);
    for (const CliExample& e : a_.examples) {
      pb::QAExample* x = req.add_examples();
      x->mutable_image()->set_data(read_file_bytes("--example", e.image));
      x->set_question(e.question);
      x->set_answer(e.answer);
    }
    req.set_max_new_tokens(max_new_tokens(a_));
    fill_sampling(a_, req.mutable_sampling());
    grpc::ClientContext ctx;
    prepare_context(&ctx);
    pb::GenerateResponse resp;
    grpc::Status st = stub_->AnswerQuestion(&ctx, req, &resp);
    if (st.ok()) print_response(a_, resp, out);
    return st;
  }

  grpc::Status info(std::ostream& out) {
    grpc::ClientContext ctx;
    prepare_context(&ctx);
    pb::ModelInfo resp;
    grpc::Status st = stub_->GetModelInfo(&ctx, pb::ModelInfoRequest(), &resp);
    if (st.ok()) {
      std::string text;
      google::protobuf::util::JsonPrintOptions o;
      o.always_print_primitive_fields = true;
      o.preserve_proto_field_names = true;
      const auto s = google::protobuf::util::MessageToJsonString(resp, &text, o);
      if (!s.ok()) throw Error("GetModelInfo: cannot print the response as JSON");
      out << text << "\n";
    }
    return st;
  }

  grpc::Status score(std::ostream& out) {
    pb::ScoreRequest req;
    fill_prompt(a_, req.mutable_prompt());
    for (const std::string& c : a_.candidates) req.add_candidates(c);
    grpc::ClientContext ctx;
    prepare_context(&ctx);
    pb::ScoreResponse resp;
    grpc::Status st = stub_->Score(&ctx, req, &resp);
    if (st.ok()) {
      json c = json::array();
      for (double v : resp.logprobs()) c.push_back(number_or_null(v));
      out << json{{"candidate_logprobs", c}}.dump() << "\n";
    }
    return st;
  }

 private:
  // Plain mode writes each chunk's text as it arrives; --json prints the aggregate at the end.
  grpc::Status generate_stream(const pb::GenerateRequest& req, grpc::ClientContext* ctx,
                               std::ostream& out) {
    std::unique_ptr<grpc::ClientReader<pb::GenerateChunk>> reader = stub_->GenerateStream(ctx, req);
    pb::GenerateResponse all;
    pb::GenerateChunk chunk;
    bool printed = false;
    while (reader->Read(&chunk)) {
      all.mutable_text()->append(chunk.text());
      all.mutable_token_ids()->Add(chunk.token_ids().begin(), chunk.token_ids().end());
      all.mutable_logprobs()->Add(chunk.logprobs().begin(), chunk.logprobs().end());
      for (const pb::TopLogprobs& t : chunk.top_logprobs()) *all.add_top_logprobs() = t;
      if (chunk.finish_reason() != pb::FINISH_REASON_UNSPECIFIED) {
        all.set_finish_reason(chunk.finish_reason());
      }
      if (chunk.has_usage()) *all.mutable_usage() = chunk.usage();
      if (chunk.seed() != 0) all.set_seed(chunk.seed());
      if (!a_.json && !chunk.text().empty()) {
        out << chunk.text() << std::flush;
        printed = true;
      }
    }
    grpc::Status st = reader->Finish();
    if (st.ok()) {
      if (a_.json) {
        out << response_json(all, a_.top_logprobs > 0).dump() << "\n";
      } else {
        out << "\n" << std::flush;
      }
    } else if (printed) {
      out << "\n" << std::flush;  // end the partial line before the error
    }
    return st;
  }

  const CliArgs& a_;
  std::unique_ptr<pb::Flamingo::Stub> stub_;
};

}  // namespace

int run_remote(const CliArgs& a, std::ostream& out, std::ostream& err) {
  try {
    if (a.server.empty()) throw Error("--server: expected HOST:PORT, got ''");
    RemoteCall call(a);
    grpc::Status st;
    if (a.command == "generate") {
      st = call.generate(out);
    } else if (a.command == "caption") {
      st = call.caption(out);
    } else if (a.command == "ask") {
      st = call.ask(out);
    } else if (a.command == "score") {
      st = call.score(out);
    } else if (a.command == "info") {
      st = call.info(out);
    } else {
      throw Error("unknown command '" + a.command + "'");
    }
    if (!st.ok()) {
      err << "flamingo-cli: " << status_code_name(st.error_code()) << ": "
          << one_line(st.error_message()) << "\n";
      return kExitRpc;
    }
    return kExitOk;
  } catch (const std::exception& e) {
    err << "flamingo-cli: error: " << one_line(e.what()) << "\n";
    return kExitError;
  }
}

}  // namespace flamingo::cli
