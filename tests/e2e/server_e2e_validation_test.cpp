// End-to-end tests of flamingo-server's request validation (issue 3, ctest label e2e): a real
// server started with small limits answers every bad request INVALID_ARGUMENT with a message
// naming the field, the limit and the value (malformed request bytes too: issue 11), and
// reports those limits in GetModelInfo.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>

#include "tests/e2e/server_e2e_util.h"

namespace flamingo::e2e {
namespace {

using grpc::StatusCode;
struct StrictServer {
  std::unique_ptr<ServerProcess> process;
};

ServerProcess& strict_server() {
  static StrictServer s;
  if (!s.process) {
    s.process = start_server({"--context-length", "64", "--max-images", "2", "--max-image-bytes",
                              "2000", "--max-image-pixels", "5000", "--max-stop-strings", "2",
                              "--max-top-logprobs", "3"});
  }
  return *s.process;
}

struct ValidationCase {
  std::string name;
  std::function<grpc::Status(v1::Flamingo::Stub&)> call;
  std::vector<std::string> message_parts;  // each must appear in the error message
};

grpc::Status generate_status(v1::Flamingo::Stub& stub, const v1::GenerateRequest& req) {
  return call_generate(stub, req, Ms(30000)).status;
}

v1::GenerateRequest small_request() {
  return generate_request({image_part(image_bytes("cat_face_28x28.png")), text_part("Hi")}, 4);
}

std::vector<ValidationCase> validation_cases() {
  std::vector<ValidationCase> v;
  auto with = [](std::function<void(v1::GenerateRequest&)> edit) {
    return [edit](v1::Flamingo::Stub& stub) {
      v1::GenerateRequest req = small_request();
      edit(req);
      return generate_status(stub, req);
    };
  };
  v.push_back(
      {"EmptyPrompt", with([](v1::GenerateRequest& r) { r.clear_prompt(); }), {"prompt", "empty"}});
  v.push_back({"EmptyPromptStream",
               [](v1::Flamingo::Stub& stub) {
                 v1::GenerateRequest req = small_request();
                 req.clear_prompt();
                 return call_stream(stub, req, Ms(30000)).status;
               },
               {"prompt", "empty"}});
  v.push_back({"PromptPlusMaxNewTokensOverContext",
               with([](v1::GenerateRequest& r) { r.set_max_new_tokens(100); }),
               {"max_new_tokens", "100", "context length 64"}});
  v.push_back({"TooManyImages",
               with([](v1::GenerateRequest& r) {
                 *r.add_prompt() = image_part(image_bytes("leaf_42x42.png"));
                 *r.add_prompt() = image_part(image_bytes("mug_P_60x60.png"));
               }),
               {"prompt", "3 images", "2", "--max-images"}});
  v.push_back({"ImageBytesOverLimit",
               with([](v1::GenerateRequest& r) {
                 *r.mutable_prompt(0) = image_part(image_bytes("fish_progressive_84x63.jpg"));
               }),
               {"prompt[0].image", std::to_string(image_bytes("fish_progressive_84x63.jpg").size()),
                "2000", "--max-image-bytes"}});
  v.push_back({"DeclaredPixelsOverLimit",
               with([](v1::GenerateRequest& r) {
                 *r.mutable_prompt(0) = image_part(image_bytes("chair_baseline_100x80.jpg"));
               }),
               {"prompt[0].image", "100x80", "8000", "5000", "--max-image-pixels"}});
  v.push_back({"UndecodableImageBytes",
               with([](v1::GenerateRequest& r) {
                 *r.add_prompt() = image_part("this is not an image at all");
               }),
               {"prompt[2].image"}});
  v.push_back({"TruncatedPng",
               with([](v1::GenerateRequest& r) {
                 const std::string png = image_bytes("cat_face_28x28.png");
                 *r.mutable_prompt(0) = image_part(png.substr(0, png.size() / 2));
               }),
               {"prompt[0].image"}});
  v.push_back({"EmptyImage",
               with([](v1::GenerateRequest& r) { *r.add_prompt() = image_part(""); }),
               {"prompt[2].image", "empty"}});
  v.push_back(
      {"NanTemperature",
       with([](v1::GenerateRequest& r) { r.mutable_sampling()->set_temperature(std::nanf("")); }),
       {"sampling.temperature", "nan"}});
  v.push_back({"NegativeTemperature",
               with([](v1::GenerateRequest& r) { r.mutable_sampling()->set_temperature(-0.5f); }),
               {"sampling.temperature", "-0.5"}});
  v.push_back({"NegativeTopK",
               with([](v1::GenerateRequest& r) { r.mutable_sampling()->set_top_k(-3); }),
               {"sampling.top_k", "-3"}});
  v.push_back({"TopPOverOne",
               with([](v1::GenerateRequest& r) { r.mutable_sampling()->set_top_p(1.5f); }),
               {"sampling.top_p", "1.5"}});
  v.push_back({"TooManyStopStrings",
               with([](v1::GenerateRequest& r) {
                 for (const char* s : {"a", "b", "c"}) r.add_stop(s);
               }),
               {"stop", "3 stop strings", "2", "--max-stop-strings"}});
  v.push_back({"EmptyStopString",
               with([](v1::GenerateRequest& r) {
                 r.add_stop("x");
                 r.add_stop("");
               }),
               {"stop[1]", "empty"}});
  v.push_back({"TopLogprobsOverLimit",
               with([](v1::GenerateRequest& r) { r.set_top_logprobs(4); }),
               {"top_logprobs", "4", "3", "--max-top-logprobs"}});
  v.push_back({"MaxNewTokensNegative",
               with([](v1::GenerateRequest& r) { r.set_max_new_tokens(-1); }),
               {"max_new_tokens", "-1"}});
  v.push_back({"CaptionExamplesOverImageLimit",
               [](v1::Flamingo::Stub& stub) {
                 v1::CaptionRequest req;
                 for (int i = 0; i < 2; ++i) {
                   v1::Example* e = req.add_examples();
                   e->mutable_image()->set_data(image_bytes("cat_face_28x28.png"));
                   e->set_text("a cat");
                 }
                 req.mutable_image()->set_data(image_bytes("leaf_42x42.png"));
                 grpc::ClientContext ctx;
                 set_timeout(ctx, Ms(30000));
                 v1::GenerateResponse resp;
                 return stub.Caption(&ctx, req, &resp);
               },
               {"examples", "3 images", "2", "--max-images"}});
  v.push_back({"QuestionEmpty",
               [](v1::Flamingo::Stub& stub) {
                 v1::QuestionRequest req;
                 req.mutable_image()->set_data(image_bytes("cat_face_28x28.png"));
                 grpc::ClientContext ctx;
                 set_timeout(ctx, Ms(30000));
                 v1::GenerateResponse resp;
                 return stub.AnswerQuestion(&ctx, req, &resp);
               },
               {"question", "empty"}});
  v.push_back({"ScoreEmptyCandidate",
               [](v1::Flamingo::Stub& stub) {
                 v1::ScoreRequest req;
                 *req.add_prompt() = text_part("Hello");
                 req.add_candidates(" world");
                 req.add_candidates("");
                 grpc::ClientContext ctx;
                 set_timeout(ctx, Ms(30000));
                 v1::ScoreResponse resp;
                 return stub.Score(&ctx, req, &resp);
               },
               {"candidates[1]", "empty"}});
  return v;
}

class StrictServerE2E : public ::testing::Test {
 protected:
  void TearDown() override {
    if (HasFailure() || verbose())
      std::cerr << "server log: " << strict_server().describe(3000) << "\n";
  }
};

// One test for all cases: each server start costs ~0.7 s (loading libtorch), and ctest runs
// every TEST in its own process.
TEST_F(StrictServerE2E, EveryValidationCaseIsInvalidArgumentNamingFieldAndValue) {
  auto stub = make_stub(strict_server().address());
  for (const ValidationCase& c : validation_cases()) {
    SCOPED_TRACE(c.name);
    const grpc::Status s = c.call(*stub);
    EXPECT_EQ(s.error_code(), StatusCode::INVALID_ARGUMENT) << s.error_message();
    for (const std::string& part : c.message_parts)
      EXPECT_NE(s.error_message().find(part), std::string::npos)
          << "'" << part << "' not in: " << s.error_message();
    EXPECT_EQ(s.error_message().find('\n'), std::string::npos) << "one-line message";
  }
  // The server keeps serving valid requests.
  EXPECT_TRUE(generate_status(*stub, small_request()).ok());
}

// Status of a server-streaming call with raw request bytes (grpc::GenericStub).
grpc::Status generic_stream(const std::shared_ptr<grpc::Channel>& channel,
                            const std::string& method, const std::string& request) {
  grpc::GenericStub stub(channel);
  grpc::ClientContext ctx;
  set_timeout(ctx, Ms(10000));
  grpc::Slice slice(request);
  const grpc::ByteBuffer req(&slice, 1);
  grpc::CompletionQueue cq;
  void* tag = nullptr;
  bool ok = false;
  auto next = [&] { return cq.Next(&tag, &ok); };
  std::unique_ptr<grpc::GenericClientAsyncReaderWriter> call = stub.PrepareCall(&ctx, method, &cq);
  call->StartCall(reinterpret_cast<void*>(1));
  next();
  call->Write(req, reinterpret_cast<void*>(2));
  next();
  call->WritesDone(reinterpret_cast<void*>(3));
  next();
  grpc::ByteBuffer chunk;
  do {
    call->Read(&chunk, reinterpret_cast<void*>(4));
    next();
  } while (ok);
  grpc::Status status;
  call->Finish(&status, reinterpret_cast<void*>(5));
  next();
  cq.Shutdown();
  while (next()) {
  }
  return status;
}

// Bytes that are not a valid request message, sent to every method: INVALID_ARGUMENT naming
// the message type and what is wrong (gRPC's typed handlers answered UNIMPLEMENTED with no
// message, as if the method did not exist); the server keeps serving.
TEST_F(StrictServerE2E, MalformedRequestBytesAreInvalidArgumentNamingWhatIsWrong) {
  const auto channel =
      grpc::CreateChannel(strict_server().address(), grpc::InsecureChannelCredentials());
  const std::string bad_text =  // prompt[0].text = "\xc3\x28": a lead byte, then no continuation
      wire_bytes_field(1, wire_bytes_field(1, "\xc3\x28"));
  struct Case {
    std::string bytes, expect;
  };
  const std::vector<Case> cases = {
      {"\xff\xfe\x01\x02garbage", "malformed protobuf"},
      {std::string("\x10\xff", 2), "malformed protobuf"},               // a truncated varint
      {wire_bytes_field(1, "abc").substr(0, 4), "malformed protobuf"},  // a truncated field
  };
  const std::vector<std::pair<std::string, std::string>> methods = {
      {"Generate", "GenerateRequest"},       {"Caption", "CaptionRequest"},
      {"AnswerQuestion", "QuestionRequest"}, {"Score", "ScoreRequest"},
      {"GetModelInfo", "ModelInfoRequest"},  {"Embed", "EmbedRequest"},
      {"Classify", "ClassifyRequest"}};
  for (const auto& [method, type] : methods) {
    for (const Case& c : cases) {
      std::string response;
      const grpc::Status s =
          generic_unary(channel, "/flamingo.v1.Flamingo/" + method, c.bytes, &response);
      SCOPED_TRACE(method + " " + std::to_string(c.bytes.size()) + " bytes");
      EXPECT_EQ(s.error_code(), StatusCode::INVALID_ARGUMENT) << s.error_message();
      EXPECT_NE(s.error_message().find("not a valid flamingo.v1." + type), std::string::npos)
          << s.error_message();
      EXPECT_NE(s.error_message().find(c.expect), std::string::npos) << s.error_message();
    }
  }
  for (const std::string method : {"Generate", "Score"}) {
    std::string response;
    const grpc::Status s =
        generic_unary(channel, "/flamingo.v1.Flamingo/" + method, bad_text, &response);
    EXPECT_EQ(s.error_code(), StatusCode::INVALID_ARGUMENT) << method;
    EXPECT_NE(s.error_message().find("field 'prompt[0].text' is not valid UTF-8"),
              std::string::npos)
        << s.error_message();
  }
  for (const std::string& bytes : {std::string("\xff\xfe\x01garbage"), bad_text}) {
    const grpc::Status s = generic_stream(channel, "/flamingo.v1.Flamingo/GenerateStream", bytes);
    EXPECT_EQ(s.error_code(), StatusCode::INVALID_ARGUMENT) << s.error_message();
    EXPECT_NE(s.error_message().find("not a valid flamingo.v1.GenerateRequest"), std::string::npos)
        << s.error_message();
  }
  // Valid bytes through the same raw path get a real answer; the server keeps serving.
  std::string info;
  ASSERT_TRUE(generic_unary(channel, "/flamingo.v1.Flamingo/GetModelInfo", "", &info).ok());
  v1::ModelInfo parsed;
  ASSERT_TRUE(parsed.ParseFromString(info));
  EXPECT_EQ(parsed.context_length(), 64);
  auto stub = make_stub(strict_server().address());
  EXPECT_TRUE(generate_status(*stub, small_request()).ok());
}

TEST_F(StrictServerE2E, LimitsFromFlagsAreReportedAndAValidRequestPasses) {
  auto stub = make_stub(strict_server().address());
  const v1::ModelInfo info = model_info(*stub);
  EXPECT_EQ(info.context_length(), 64);
  EXPECT_EQ(info.limits().max_images_per_request(), 2);
  EXPECT_EQ(info.limits().max_image_bytes(), 2000);
  EXPECT_EQ(info.limits().max_image_pixels(), 5000);
  EXPECT_EQ(info.limits().max_prompt_tokens(), 64);
  EXPECT_EQ(info.limits().max_stop_strings(), 2);
  EXPECT_EQ(info.limits().max_top_logprobs(), 3);
  // At the limits exactly: 2 images (784 and 2450 pixels, each <= 2000 bytes), 2 stop strings,
  // top_logprobs 3.
  v1::GenerateRequest req =
      generate_request({image_part(image_bytes("cat_face_28x28.png")), text_part("Hi"),
                        image_part(image_bytes("sun_cloud_70x35.png"))},
                       8);
  req.add_stop("zzzq");
  req.add_stop("qqqz");
  req.set_top_logprobs(3);
  const UnaryResult r = call_generate(*stub, req);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.response.usage().images(), 2);
  EXPECT_LE(r.response.usage().prompt_tokens() + 8, 64);
}

}  // namespace
}  // namespace flamingo::e2e
