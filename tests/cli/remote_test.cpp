// flamingo-cli --server (cli/remote.h) against an in-process fake Flamingo service on a
// loopback port: the command line as a user types it (parse_cli_args) must reach the server as
// the right request fields, the canned answers must come out as the documented plain text or
// JSON, and gRPC failures must print "flamingo-cli: <STATUS_CODE>: <message>" with exit code 3.
#include "cli/remote.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "flamingo/v1/flamingo.grpc.pb.h"
#include "tests/cli/cli_args_test_util.h"
#include "tests/common/process.h"

namespace flamingo::cli {
namespace {

namespace pb = ::flamingo::v1;
using cli_testing::usage_error;
using nlohmann::json;
using std::chrono::system_clock;

// Records every request and answers with canned responses (or `fail` when it is not OK).
class FakeFlamingo final : public pb::Flamingo::Service {
 public:
  grpc::Status Generate(grpc::ServerContext* ctx, const pb::GenerateRequest* req,
                        pb::GenerateResponse* resp) override {
    record(ctx, "Generate");
    {
      std::lock_guard<std::mutex> lock(mu);
      generate_req = *req;
    }
    if (delay_ms > 0) wait(ctx);
    *resp = response;
    return fail;
  }
  grpc::Status GenerateStream(grpc::ServerContext* ctx, const pb::GenerateRequest* req,
                              grpc::ServerWriter<pb::GenerateChunk>* writer) override {
    record(ctx, "GenerateStream");
    {
      std::lock_guard<std::mutex> lock(mu);
      generate_req = *req;
    }
    for (const pb::GenerateChunk& c : chunks) writer->Write(c);
    return fail;
  }
  grpc::Status Caption(grpc::ServerContext* ctx, const pb::CaptionRequest* req,
                       pb::GenerateResponse* resp) override {
    record(ctx, "Caption");
    std::lock_guard<std::mutex> lock(mu);
    caption_req = *req;
    *resp = response;
    return fail;
  }
  grpc::Status AnswerQuestion(grpc::ServerContext* ctx, const pb::QuestionRequest* req,
                              pb::GenerateResponse* resp) override {
    record(ctx, "AnswerQuestion");
    std::lock_guard<std::mutex> lock(mu);
    question_req = *req;
    *resp = response;
    return fail;
  }
  grpc::Status Score(grpc::ServerContext* ctx, const pb::ScoreRequest* req,
                     pb::ScoreResponse* resp) override {
    record(ctx, "Score");
    std::lock_guard<std::mutex> lock(mu);
    score_req = *req;
    *resp = score_response;
    return fail;
  }

  grpc::Status GetModelInfo(grpc::ServerContext* ctx, const pb::ModelInfoRequest*,
                            pb::ModelInfo* resp) override {
    record(ctx, "GetModelInfo");
    std::lock_guard<std::mutex> lock(mu);
    *resp = info_response;
    return fail;
  }

  std::mutex mu;
  std::vector<std::string> calls;
  system_clock::time_point deadline;
  std::string authorization;  // the last call's "authorization" metadata ("" when none)
  pb::ModelInfo info_response;
  pb::GenerateRequest generate_req;
  pb::CaptionRequest caption_req;
  pb::QuestionRequest question_req;
  pb::ScoreRequest score_req;
  // Set before the call.
  pb::GenerateResponse response;
  std::vector<pb::GenerateChunk> chunks;
  pb::ScoreResponse score_response;
  grpc::Status fail = grpc::Status::OK;
  int delay_ms = 0;

 private:
  void record(grpc::ServerContext* ctx, const std::string& method) {
    std::lock_guard<std::mutex> lock(mu);
    calls.push_back(method);
    deadline = ctx->deadline();
    const auto it = ctx->client_metadata().find("authorization");
    authorization = it == ctx->client_metadata().end()
                        ? std::string()
                        : std::string(it->second.data(), it->second.size());
  }
  // Holds the call (up to delay_ms) until the client gives up.
  void wait(grpc::ServerContext* ctx) {
    const auto until = system_clock::now() + std::chrono::milliseconds(delay_ms);
    while (system_clock::now() < until && !ctx->IsCancelled()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
};

struct Result {
  int code;
  std::string out, err;
};

class RemoteTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder b;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    b.RegisterService(&fake_);
    server_ = b.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_GT(port_, 0);
    // Image files are opaque bytes to the client (the server decodes them): NULs included.
    cat_ = write_file("cat.png", std::string("\x89PNG\r\n\x1a\n\0cat", 12));
    dog_ = write_file("dog.jpg", std::string("\xff\xd8\xff\0dog", 7));
    bird_ = write_file("bird.png", "bird-bytes");
  }
  void TearDown() override { server_->Shutdown(system_clock::now() + std::chrono::seconds(2)); }

  std::string write_file(const std::string& name, const std::string& bytes) {
    const std::string path = dir_.file(name);
    std::ofstream(path, std::ios::binary) << bytes;
    return path;
  }
  std::string server() const { return "127.0.0.1:" + std::to_string(port_); }

  // flamingo-cli COMMAND --server <fake> ARGS...
  Result run(const std::string& command, std::vector<std::string> args) {
    args.insert(args.begin(), {command, "--server", server()});
    return run_raw(args);
  }
  static Result run_raw(const std::vector<std::string>& argv) {
    CliArgs a = parse_cli_args(argv, "/unused/model");
    std::ostringstream out, err;
    int code = run_remote(a, out, err);
    return {code, out.str(), err.str()};
  }

  testing::TempDir dir_{"flamingo_remote"};
  FakeFlamingo fake_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::string cat_, dog_, bird_;
};

pb::GenerateResponse canned_response() {
  pb::GenerateResponse r;
  r.set_text("a cat.");
  r.add_token_ids(264);
  r.add_token_ids(5841);
  r.add_logprobs(-0.5f);
  r.add_logprobs(-1.25f);
  r.set_finish_reason(pb::STOP);
  r.mutable_usage()->set_prompt_tokens(17);
  r.mutable_usage()->set_completion_tokens(2);
  r.mutable_usage()->set_images(1);
  r.set_seed(987654321);
  r.set_request_id("req-7");
  return r;
}

TEST_F(RemoteTest, GenerateMapsPromptMarkersAndFlagsToTheRequest) {
  fake_.response = canned_response();
  Result r = run("generate", {"--prompt",
                              "<image>Describe<image> and <image>",
                              "--image",
                              cat_,
                              "--image",
                              dog_,
                              "--image",
                              bird_,
                              "--max-new-tokens",
                              "7",
                              "--temperature",
                              "0.7",
                              "--top-k",
                              "40",
                              "--top-p",
                              "0.9",
                              "--repetition-penalty",
                              "1.3",
                              "--seed",
                              "42",
                              "--stop",
                              "\n",
                              "--stop",
                              "END",
                              "--ignore-eos",
                              "--top-logprobs",
                              "3",
                              "--request-id",
                              "my-id"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  ASSERT_EQ(fake_.calls, std::vector<std::string>{"Generate"});
  const pb::GenerateRequest& q = fake_.generate_req;
  ASSERT_EQ(q.prompt_size(), 5);
  EXPECT_EQ(q.prompt(0).image().data(), std::string("\x89PNG\r\n\x1a\n\0cat", 12));
  EXPECT_EQ(q.prompt(1).text(), "Describe");
  EXPECT_EQ(q.prompt(2).image().data(), std::string("\xff\xd8\xff\0dog", 7));
  EXPECT_EQ(q.prompt(3).text(), " and ");
  EXPECT_EQ(q.prompt(4).image().data(), "bird-bytes");
  EXPECT_EQ(q.max_new_tokens(), 7);
  EXPECT_FLOAT_EQ(q.sampling().temperature(), 0.7f);
  EXPECT_EQ(q.sampling().top_k(), 40);
  EXPECT_FLOAT_EQ(q.sampling().top_p(), 0.9f);
  EXPECT_FLOAT_EQ(q.sampling().repetition_penalty(), 1.3f);
  EXPECT_EQ(q.sampling().seed(), 42u);
  ASSERT_EQ(q.stop_size(), 2);
  EXPECT_EQ(q.stop(0), "\n");
  EXPECT_EQ(q.stop(1), "END");
  EXPECT_TRUE(q.ignore_eos());
  EXPECT_EQ(q.top_logprobs(), 3);
  EXPECT_EQ(q.request_id(), "my-id");
  EXPECT_EQ(r.out, "a cat.\n");  // plain mode: the text only
  EXPECT_EQ(r.err, "");
}

TEST_F(RemoteTest, GenerateLeavesUnsetFieldsToTheServer) {
  Result r = run("generate", {"--prompt", "Hello <image>", "--image", cat_});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  const pb::GenerateRequest& q = fake_.generate_req;
  ASSERT_EQ(q.prompt_size(), 2);
  EXPECT_EQ(q.prompt(0).text(), "Hello ");
  EXPECT_TRUE(q.prompt(1).has_image());
  EXPECT_EQ(q.max_new_tokens(), 0);    // the server's --default-max-new-tokens
  EXPECT_EQ(q.sampling().seed(), 0u);  // the server picks and returns one
  EXPECT_EQ(q.sampling().temperature(), 0.f);
  EXPECT_EQ(q.sampling().top_k(), 0);
  // The CLI's "off" values: 1 means off as 0 does.
  EXPECT_EQ(q.sampling().top_p(), 1.f);
  EXPECT_EQ(q.sampling().repetition_penalty(), 1.f);
  EXPECT_EQ(q.stop_size(), 0);
  EXPECT_FALSE(q.ignore_eos());
  EXPECT_EQ(q.top_logprobs(), 0);
  EXPECT_EQ(q.request_id(), "");
  // A "<image>"-free prompt is one text part; "</s>" in it stays literal text.
  run("generate", {"--prompt", "just </s> text"});
  ASSERT_EQ(fake_.generate_req.prompt_size(), 1);
  EXPECT_EQ(fake_.generate_req.prompt(0).text(), "just </s> text");
}

TEST_F(RemoteTest, GenerateJsonPrintsTheResponseFields) {
  fake_.response = canned_response();
  pb::TopLogprobs* t = fake_.response.add_top_logprobs();
  t->add_token_ids(264);
  t->add_token_ids(11);
  t->add_logprobs(-0.5f);
  t->add_logprobs(-2.f);
  fake_.response.add_top_logprobs()->add_token_ids(5841);
  fake_.response.mutable_top_logprobs(1)->add_logprobs(-1.25f);
  Result r = run("generate", {"--prompt", "x", "--top-logprobs", "2", "--json"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  json out = json::parse(r.out);
  EXPECT_EQ(out["text"], "a cat.");
  EXPECT_EQ(out["token_ids"], json({264, 5841}));
  EXPECT_EQ(out["logprobs"], json({-0.5, -1.25}));
  EXPECT_EQ(out["finish_reason"], "stop");
  EXPECT_EQ(out["seed"], 987654321u);
  EXPECT_EQ(out["usage"], json({{"prompt_tokens", 17}, {"completion_tokens", 2}, {"images", 1}}));
  EXPECT_EQ(out["request_id"], "req-7");
  EXPECT_EQ(out["top_logprobs"], json::parse(R"([{"token_ids":[264,11],"logprobs":[-0.5,-2.0]},
                            {"token_ids":[5841],"logprobs":[-1.25]}])"));
  // Without --top-logprobs the field is absent, as in local mode; LENGTH -> "length".
  fake_.response.set_finish_reason(pb::LENGTH);
  out = json::parse(run("generate", {"--prompt", "x", "--json"}).out);
  EXPECT_FALSE(out.contains("top_logprobs"));
  EXPECT_EQ(out["finish_reason"], "length");
}

TEST_F(RemoteTest, StreamPrintsChunksInOrderAsPlainText) {
  for (const char* piece : {"Hel", "lo, ", "wor", "ld"}) {
    pb::GenerateChunk c;
    c.set_text(piece);
    fake_.chunks.push_back(c);
  }
  Result r = run("generate", {"--prompt", "hi", "--stream", "--max-new-tokens", "4"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_EQ(fake_.calls, std::vector<std::string>{"GenerateStream"});
  EXPECT_EQ(fake_.generate_req.max_new_tokens(), 4);
  EXPECT_EQ(r.out, "Hello, world\n");
}

TEST_F(RemoteTest, StreamJsonPrintsTheAggregate) {
  pb::GenerateChunk a, b, c;
  a.set_text("ab");
  a.add_token_ids(1);
  a.add_token_ids(2);
  a.add_logprobs(-0.25f);
  a.add_logprobs(-0.5f);
  b.set_text("");  // an incomplete UTF-8 character held back by the server
  b.add_token_ids(3);
  b.add_logprobs(-1.f);
  c.set_text("\xc3\xa9");
  c.add_token_ids(4);
  c.add_logprobs(-2.f);
  c.set_finish_reason(pb::LENGTH);
  c.mutable_usage()->set_prompt_tokens(5);
  c.mutable_usage()->set_completion_tokens(4);
  c.set_seed(77);
  fake_.chunks = {a, b, c};
  Result r = run("generate", {"--prompt", "hi", "--stream", "--json"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  json out = json::parse(r.out);  // one JSON object, nothing streamed before it
  EXPECT_EQ(out["text"], "ab\xc3\xa9");
  EXPECT_EQ(out["token_ids"], json({1, 2, 3, 4}));
  EXPECT_EQ(out["logprobs"], json({-0.25, -0.5, -1.0, -2.0}));
  EXPECT_EQ(out["finish_reason"], "length");
  EXPECT_EQ(out["seed"], 77);
  EXPECT_EQ(out["usage"], json({{"prompt_tokens", 5}, {"completion_tokens", 4}, {"images", 0}}));
}

TEST_F(RemoteTest, StreamErrorAfterSomeTextEndsTheLineAndReportsTheStatus) {
  pb::GenerateChunk c;
  c.set_text("partial");
  fake_.chunks = {c};
  fake_.fail = grpc::Status(grpc::StatusCode::CANCELLED, "server shutting down");
  Result r = run("generate", {"--prompt", "hi", "--stream"});
  EXPECT_EQ(r.code, kExitRpc);
  EXPECT_EQ(r.out, "partial\n");
  EXPECT_EQ(r.err, "flamingo-cli: CANCELLED: server shutting down\n");
}

TEST_F(RemoteTest, CaptionMapsImageExamplesAndSampling) {
  fake_.response = canned_response();
  Result r = run("caption",
                 {"--image", cat_, "--example", dog_ + "=A dog on grass.", "--example",
                  bird_ + "=x=y", "--max-new-tokens", "12", "--temperature", "0.5", "--seed", "3"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  ASSERT_EQ(fake_.calls, std::vector<std::string>{"Caption"});
  const pb::CaptionRequest& q = fake_.caption_req;
  EXPECT_EQ(q.image().data(), std::string("\x89PNG\r\n\x1a\n\0cat", 12));
  ASSERT_EQ(q.examples_size(), 2);
  EXPECT_EQ(q.examples(0).image().data(), std::string("\xff\xd8\xff\0dog", 7));
  EXPECT_EQ(q.examples(0).text(), "A dog on grass.");
  EXPECT_EQ(q.examples(1).image().data(), "bird-bytes");
  EXPECT_EQ(q.examples(1).text(), "x=y");  // split at the first '='
  EXPECT_EQ(q.max_new_tokens(), 12);
  EXPECT_FLOAT_EQ(q.sampling().temperature(), 0.5f);
  EXPECT_EQ(q.sampling().seed(), 3u);
  EXPECT_EQ(r.out, "a cat.\n");
}

TEST_F(RemoteTest, AskMapsQuestionAndExamplesAndPrintsJson) {
  fake_.response = canned_response();
  fake_.response.set_text("4");
  Result r = run("ask", {"--image", cat_, "--question", "What animal is this?", "--example",
                         dog_ + "=What is 2+2=?=4", "--example", bird_ + "=Color?=blue", "--json"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  ASSERT_EQ(fake_.calls, std::vector<std::string>{"AnswerQuestion"});
  const pb::QuestionRequest& q = fake_.question_req;
  EXPECT_EQ(q.image().data(), std::string("\x89PNG\r\n\x1a\n\0cat", 12));
  EXPECT_EQ(q.question(), "What animal is this?");
  ASSERT_EQ(q.examples_size(), 2);
  EXPECT_EQ(q.examples(0).image().data(), std::string("\xff\xd8\xff\0dog", 7));
  EXPECT_EQ(q.examples(0).question(), "What is 2+2=?");  // first and last '='
  EXPECT_EQ(q.examples(0).answer(), "4");
  EXPECT_EQ(q.examples(1).question(), "Color?");
  EXPECT_EQ(q.examples(1).answer(), "blue");
  EXPECT_EQ(q.max_new_tokens(), 0);
  json out = json::parse(r.out);
  EXPECT_EQ(out["text"], "4");
  EXPECT_EQ(out["finish_reason"], "stop");
  EXPECT_EQ(out["usage"]["images"], 1);
}

TEST_F(RemoteTest, ScoreMapsPromptAndCandidatesAndPrintsTheirLogprobs) {
  fake_.score_response.add_logprobs(-1.5);
  fake_.score_response.add_logprobs(-20.25);
  Result r = run("score", {"--prompt", "<image>Is it a cat? Answer:", "--image", cat_,
                           "--candidate", " yes", "--candidate", " no", "--json"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  ASSERT_EQ(fake_.calls, std::vector<std::string>{"Score"});
  const pb::ScoreRequest& q = fake_.score_req;
  ASSERT_EQ(q.prompt_size(), 2);
  EXPECT_TRUE(q.prompt(0).has_image());
  EXPECT_EQ(q.prompt(1).text(), "Is it a cat? Answer:");
  ASSERT_EQ(q.candidates_size(), 2);
  EXPECT_EQ(q.candidates(0), " yes");
  EXPECT_EQ(q.candidates(1), " no");
  EXPECT_EQ(json::parse(r.out), json({{"candidate_logprobs", {-1.5, -20.25}}}));
}

TEST_F(RemoteTest, InfoPrintsGetModelInfoAsJson) {
  fake_.info_response.set_family("idefics");
  fake_.info_response.set_context_length(2048);
  fake_.info_response.mutable_limits()->set_max_images_per_request(32);
  Result r = run("info", {});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  ASSERT_EQ(fake_.calls, std::vector<std::string>{"GetModelInfo"});
  const json j = json::parse(r.out);
  EXPECT_EQ(j.at("family"), "idefics");
  EXPECT_EQ(j.at("context_length"), "2048");  // proto3 JSON prints int64 as a string
  EXPECT_EQ(j.at("limits").at("max_images_per_request"), 32);
  EXPECT_EQ(j.at("kv_blocks_free"), "0");  // zero fields are printed too
  EXPECT_NE(usage_error({"info"}).find("info needs --server"), std::string::npos);
  EXPECT_NE(usage_error({"info", "--server", "x:1", "--prompt", "p"}).find("'--prompt'"),
            std::string::npos);
}

TEST_F(RemoteTest, ServerErrorsPrintTheStatusCodeNameAndMessage) {
  fake_.fail = grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                            "prompt: 33 images exceed the limit 32 (--max-images)");
  Result r = run("generate", {"--prompt", "x", "--json"});
  EXPECT_EQ(r.code, kExitRpc);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err,
            "flamingo-cli: INVALID_ARGUMENT: prompt: 33 images exceed the limit 32 "
            "(--max-images)\n");

  fake_.fail = grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "queue full\n(256 waiting)");
  r = run("caption", {"--image", cat_});
  EXPECT_EQ(r.code, kExitRpc);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "flamingo-cli: RESOURCE_EXHAUSTED: queue full (256 waiting)\n");  // one line

  fake_.fail = grpc::Status(grpc::StatusCode::UNAVAILABLE, "model loading");
  r = run("score", {"--prompt", "x", "--candidate", "y", "--json"});
  EXPECT_EQ(r.code, kExitRpc);
  EXPECT_EQ(r.err, "flamingo-cli: UNAVAILABLE: model loading\n");

  fake_.fail = grpc::Status(grpc::StatusCode::UNAVAILABLE, "shutting down");
  r = run("ask", {"--image", cat_, "--question", "q"});
  EXPECT_EQ(r.err, "flamingo-cli: UNAVAILABLE: shutting down\n");
}

TEST_F(RemoteTest, TimeoutSetsTheDeadlineAndExpires) {
  const auto before = system_clock::now();
  Result r = run("generate", {"--prompt", "x", "--timeout", "30"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_GT(fake_.deadline, before + std::chrono::seconds(29));
  EXPECT_LT(fake_.deadline, system_clock::now() + std::chrono::seconds(31));

  fake_.delay_ms = 5000;
  const auto start = std::chrono::steady_clock::now();
  r = run("generate", {"--prompt", "x", "--timeout", "0.2"});
  EXPECT_EQ(r.code, kExitRpc);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err.rfind("flamingo-cli: DEADLINE_EXCEEDED: ", 0), 0u) << r.err;
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));
}

// FLAMINGO_API_KEY goes out as "authorization: Bearer KEY"; without it, no such metadata.
TEST_F(RemoteTest, ApiKeyFromTheEnvironmentIsSentAsBearerMetadata) {
  ::unsetenv("FLAMINGO_API_KEY");
  ASSERT_EQ(run("generate", {"--prompt", "x"}).code, kExitOk);
  EXPECT_EQ(fake_.authorization, "");
  ::setenv("FLAMINGO_API_KEY", "sk-test-1", 1);
  const Result r = run("generate", {"--prompt", "x"});
  ::unsetenv("FLAMINGO_API_KEY");
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_EQ(fake_.authorization, "Bearer sk-test-1");
}

TEST_F(RemoteTest, WithoutTimeoutThereIsNoDeadline) {
  ASSERT_EQ(run("generate", {"--prompt", "x"}).code, kExitOk);
  EXPECT_GT(fake_.deadline, system_clock::now() + std::chrono::hours(24 * 365));
}

TEST_F(RemoteTest, UnreachableServerIsUnavailable) {
  // A port that was just bound and released: nothing listens there.
  int free_port = 0;
  {
    FakeFlamingo other;
    grpc::ServerBuilder b;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &free_port);
    b.RegisterService(&other);
    b.BuildAndStart()->Shutdown();
  }
  ASSERT_GT(free_port, 0);
  Result r = run_raw({"generate", "--server", "127.0.0.1:" + std::to_string(free_port), "--prompt",
                      "x", "--timeout", "10"});
  EXPECT_EQ(r.code, kExitRpc);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err.rfind("flamingo-cli: UNAVAILABLE: ", 0), 0u) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

TEST_F(RemoteTest, LocalInputErrorsFailBeforeAnyCall) {
  Result r = run("generate", {"--prompt", "<image><image>x", "--image", cat_});
  EXPECT_EQ(r.code, kExitError);
  EXPECT_EQ(r.err,
            "flamingo-cli: error: --prompt has 2 <image> marker(s) but 1 --image file(s) were "
            "given\n");
  r = run("score", {"--prompt", "x", "--image", cat_, "--candidate", "y", "--json"});
  EXPECT_EQ(r.code, kExitError);
  EXPECT_NE(r.err.find("0 <image> marker(s) but 1 --image file(s)"), std::string::npos);
  r = run("caption", {"--image", "/nonexistent/img.png"});
  EXPECT_EQ(r.code, kExitError);
  EXPECT_NE(r.err.find("--image: cannot read '/nonexistent/img.png'"), std::string::npos);
  r = run("ask", {"--image", cat_, "--question", "q", "--example", "/nope.png=a=b"});
  EXPECT_EQ(r.code, kExitError);
  EXPECT_NE(r.err.find("--example: cannot read '/nope.png'"), std::string::npos);
  EXPECT_EQ(r.out, "");
  EXPECT_TRUE(fake_.calls.empty());
}

}  // namespace
}  // namespace flamingo::cli
