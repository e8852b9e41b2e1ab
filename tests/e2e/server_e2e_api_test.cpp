// End-to-end tests of flamingo-server's API (issue 3, ctest label e2e): a real server process on
// a loopback port, called through the generated gRPC C++ stubs. Generate and Score against the
// in-process CLI as the oracle, streaming order and completeness, 32 concurrent mixed requests
// against their solo results, a request over gRPC's default 4 MiB receive limit, server
// reflection and the Prometheus endpoint. Caption and AnswerQuestion:
// server_e2e_templates_test.cpp.
#include <google/protobuf/descriptor.pb.h>
#include <gtest/gtest.h>

#include <barrier>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "tests/common/process.h"
#include "tests/e2e/server_e2e_util.h"

namespace flamingo::e2e {
namespace {

using grpc::StatusCode;
using json = nlohmann::json;

[[maybe_unused]] ::testing::Environment* const kEnv =
    ::testing::AddGlobalTestEnvironment(new DefaultServerEnvironment);

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// Runs flamingo-cli in-process (no server) and parses its --json output.
json run_cli(const std::string& args) {
  const std::string cmd = kCliBinary + " " + args + " --model " + shell_quote(kDefaultModel) +
                          " --dtype float32 --json";
  const flamingo::testing::CommandResult r = flamingo::testing::run_command(cmd);
  if (r.exit_code != 0) throw std::runtime_error("`" + cmd + "` failed: " + r.output);
  return json::parse(r.output);
}

std::vector<int32_t> ids(const google::protobuf::RepeatedField<int32_t>& f) {
  return {f.begin(), f.end()};
}

v1::FinishReason finish_from_cli(const std::string& s) {
  if (s == "length") return v1::LENGTH;
  if (s == "stop") return v1::STOP;
  return v1::FINISH_REASON_UNSPECIFIED;
}

class ServerE2E : public DefaultServerTest {};

// ---- GetModelInfo ----

TEST_F(ServerE2E, GetModelInfoReportsModelLimitsAndKvBlocks) {
  const json cfg = json::parse(read_file(kDefaultModel + "/config.json"));
  const v1::ModelInfo info = wait_kv_idle(*stub_);
  EXPECT_EQ(info.family(), "idefics");
  EXPECT_EQ(std::filesystem::canonical(info.model_dir()),
            std::filesystem::canonical(kDefaultModel));
  EXPECT_EQ(info.hidden_size(), cfg["hidden_size"].get<int64_t>());
  EXPECT_EQ(info.num_layers(), cfg["num_hidden_layers"].get<int64_t>());
  EXPECT_EQ(info.num_cross_layers(),
            cfg["num_hidden_layers"].get<int64_t>() / cfg["cross_layer_interval"].get<int64_t>());
  EXPECT_EQ(info.vocab_size(),
            cfg["vocab_size"].get<int64_t>() + cfg["additional_vocab_size"].get<int64_t>());
  EXPECT_EQ(info.image_size(), cfg["vision_config"]["image_size"].get<int64_t>());
  EXPECT_EQ(info.latents_per_image(),
            cfg["perceiver_config"]["resampler_n_latents"].get<int64_t>());
  EXPECT_EQ(info.dtype(), "float32");
  EXPECT_EQ(info.context_length(), cfg["max_position_embeddings"].get<int64_t>());
  // The documented defaults of the flags.
  const v1::ServerLimits& l = info.limits();
  EXPECT_EQ(l.max_images_per_request(), 32);
  EXPECT_EQ(l.max_image_bytes(), 20971520);
  EXPECT_EQ(l.max_image_pixels(), 40000000);
  EXPECT_EQ(l.max_prompt_tokens(), info.context_length());  // 0 = the context length
  EXPECT_EQ(l.max_new_tokens(), 1024);
  EXPECT_EQ(l.default_max_new_tokens(), 64);
  EXPECT_EQ(l.max_queued_requests(), 256);
  EXPECT_EQ(l.max_running_requests(), 32);
  EXPECT_EQ(l.max_stop_strings(), 8);
  EXPECT_EQ(l.max_stop_string_bytes(), 256);
  EXPECT_EQ(l.max_top_logprobs(), 20);
  EXPECT_EQ(l.max_candidates(), 64);
  EXPECT_EQ(l.max_text_bytes(), 1048576);
  EXPECT_EQ(info.kv_block_size(), 16);
  EXPECT_GT(info.kv_blocks_total(), 0);
  EXPECT_GE(info.kv_blocks_total() * info.kv_block_size(), info.context_length());
  EXPECT_EQ(info.kv_blocks_free(), info.kv_blocks_total());
}

// ---- Generate ----

TEST_F(ServerE2E, GenerateMatchesTheInProcessCli) {
  const json cli =
      run_cli("generate --prompt " + shell_quote("<image>A photo of<image> and") + " --image " +
              shell_quote(kImageDir + "cat_face_28x28.png") + " --image " +
              shell_quote(kImageDir + "chair_baseline_100x80.jpg") + " --max-new-tokens 24");
  v1::GenerateRequest req =
      generate_request({image_part(image_bytes("cat_face_28x28.png")), text_part("A photo of"),
                        image_part(image_bytes("chair_baseline_100x80.jpg")), text_part(" and")},
                       24);
  req.set_request_id("e2e-generate-vs-cli");
  const UnaryResult r = call_generate(*stub_, req);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  const v1::GenerateResponse& g = r.response;
  EXPECT_EQ(ids(g.token_ids()), cli["token_ids"].get<std::vector<int32_t>>());
  EXPECT_EQ(g.text(), cli["text"].get<std::string>());
  EXPECT_EQ(g.finish_reason(), finish_from_cli(cli["finish_reason"].get<std::string>()));
  const std::vector<double> cli_lp = cli["logprobs"].get<std::vector<double>>();
  ASSERT_EQ(g.logprobs_size(), static_cast<int>(cli_lp.size()));
  for (size_t i = 0; i < cli_lp.size(); ++i) EXPECT_NEAR(g.logprobs(i), cli_lp[i], 1e-3) << i;
  EXPECT_EQ(g.usage().prompt_tokens(), static_cast<int>(cli["prompt_token_ids"].size()));
  EXPECT_EQ(g.usage().completion_tokens(), g.token_ids_size());
  EXPECT_EQ(g.usage().images(), 2);
  EXPECT_NE(g.seed(), 0u);  // seed 0 = a random seed, reported
  EXPECT_EQ(g.request_id(), "e2e-generate-vs-cli");
  EXPECT_EQ(g.top_logprobs_size(), 0);
}

TEST_F(ServerE2E, GenerateTopLogprobsAreSortedAndContainTheGreedyToken) {
  v1::GenerateRequest req =
      generate_request({image_part(image_bytes("leaf_42x42.png")), text_part("Leaves are")}, 12);
  req.set_top_logprobs(5);
  req.set_ignore_eos(true);
  const UnaryResult r = call_generate(*stub_, req);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  const v1::GenerateResponse& g = r.response;
  ASSERT_EQ(g.token_ids_size(), 12);
  ASSERT_EQ(g.top_logprobs_size(), 12);
  for (int i = 0; i < 12; ++i) {
    const v1::TopLogprobs& t = g.top_logprobs(i);
    ASSERT_EQ(t.token_ids_size(), 5);
    ASSERT_EQ(t.logprobs_size(), 5);
    EXPECT_EQ(t.token_ids(0), g.token_ids(i)) << "greedy picks the most likely token";
    EXPECT_NEAR(t.logprobs(0), g.logprobs(i), 1e-5);
    double mass = 0;
    for (int k = 0; k < 5; ++k) {
      EXPECT_LE(t.logprobs(k), 0.f);
      if (k > 0) {
        EXPECT_GE(t.logprobs(k - 1), t.logprobs(k));
      }
      mass += std::exp(t.logprobs(k));
    }
    EXPECT_LE(mass, 1.0 + 1e-4);
  }
}

TEST_F(ServerE2E, GenerateSeededSamplingIsReproducibleAndSeedZeroIsReported) {
  v1::GenerateRequest req =
      generate_request({image_part(image_bytes("mug_P_60x60.png")), text_part("A mug of")}, 20);
  req.set_ignore_eos(true);
  req.mutable_sampling()->set_temperature(1.0f);
  req.mutable_sampling()->set_seed(1234);
  const UnaryResult a = call_generate(*stub_, req);
  const UnaryResult b = call_generate(*stub_, req);
  ASSERT_TRUE(a.status.ok() && b.status.ok());
  EXPECT_EQ(a.response.seed(), 1234u);
  EXPECT_EQ(ids(a.response.token_ids()), ids(b.response.token_ids()));
  EXPECT_EQ(a.response.text(), b.response.text());

  req.mutable_sampling()->set_seed(0);
  const UnaryResult random = call_generate(*stub_, req);
  ASSERT_TRUE(random.status.ok());
  ASSERT_NE(random.response.seed(), 0u);
  req.mutable_sampling()->set_seed(random.response.seed());
  const UnaryResult replay = call_generate(*stub_, req);
  ASSERT_TRUE(replay.status.ok());
  EXPECT_EQ(ids(replay.response.token_ids()), ids(random.response.token_ids()));
  EXPECT_EQ(replay.response.seed(), random.response.seed());
}

TEST_F(ServerE2E, GenerateStopsBeforeAStopString) {
  v1::GenerateRequest req =
      generate_request({image_part(image_bytes("cat_face_28x28.png")), text_part("Caption:")}, 40);
  req.set_ignore_eos(true);
  const UnaryResult full = call_generate(*stub_, req);
  ASSERT_TRUE(full.status.ok());
  const std::string& text = full.response.text();
  // A 2-byte ASCII stop string from the middle of the greedy text.
  std::string stop;
  for (size_t k = text.size() / 3; k + 2 <= text.size() && stop.empty(); ++k) {
    if (static_cast<unsigned char>(text[k]) < 0x80 &&
        static_cast<unsigned char>(text[k + 1]) < 0x80 &&
        std::isalpha(static_cast<unsigned char>(text[k])))
      stop = text.substr(k, 2);
  }
  ASSERT_FALSE(stop.empty()) << "no ASCII pair in '" << text << "'";
  const size_t at = text.find(stop);
  req.add_stop(stop);
  const UnaryResult cut = call_generate(*stub_, req);
  ASSERT_TRUE(cut.status.ok()) << cut.status.error_message();
  EXPECT_EQ(cut.response.finish_reason(), v1::STOP);
  EXPECT_EQ(cut.response.text(), text.substr(0, at)) << "stop '" << stop << "'";
  const std::vector<int32_t> all = ids(full.response.token_ids());
  const std::vector<int32_t> part = ids(cut.response.token_ids());
  ASSERT_LT(part.size(), all.size());
  EXPECT_TRUE(std::equal(part.begin(), part.end(), all.begin())) << "a prefix of the greedy run";
}

// ---- GenerateStream ----

void expect_stream_equals_unary(v1::Flamingo::Stub& stub, const v1::GenerateRequest& req) {
  const UnaryResult unary = call_generate(stub, req);
  ASSERT_TRUE(unary.status.ok()) << unary.status.error_message();
  const StreamResult s = call_stream(stub, req);
  ASSERT_TRUE(s.status.ok()) << s.status.error_message();
  ASSERT_GE(s.chunks.size(), 2u) << "a 48-token generation arrives in more than one chunk";
  for (size_t i = 0; i < s.chunks.size(); ++i) {
    const v1::GenerateChunk& c = s.chunks[i];
    EXPECT_TRUE(valid_utf8(c.text())) << "chunk " << i;
    EXPECT_EQ(c.token_ids_size(), c.logprobs_size()) << "chunk " << i;
    if (req.top_logprobs() > 0) {
      EXPECT_EQ(c.top_logprobs_size(), c.token_ids_size());
    }
    const bool last = i + 1 == s.chunks.size();
    if (!last) {
      EXPECT_EQ(c.finish_reason(), v1::FINISH_REASON_UNSPECIFIED) << "chunk " << i;
      EXPECT_FALSE(c.has_usage()) << "chunk " << i;
      EXPECT_EQ(c.seed(), 0u) << "chunk " << i;
    }
  }
  const v1::GenerateChunk& last = s.chunks.back();
  EXPECT_EQ(last.finish_reason(), v1::LENGTH);
  ASSERT_TRUE(last.has_usage());
  EXPECT_EQ(last.usage().completion_tokens(), req.max_new_tokens());
  EXPECT_EQ(last.usage().prompt_tokens(), unary.response.usage().prompt_tokens());
  EXPECT_EQ(last.usage().images(), unary.response.usage().images());
  EXPECT_EQ(last.seed(), req.sampling().seed());

  const v1::GenerateResponse& m = s.merged;
  EXPECT_EQ(ids(m.token_ids()), ids(unary.response.token_ids()));
  EXPECT_EQ(m.text(), unary.response.text());
  ASSERT_EQ(m.logprobs_size(), unary.response.logprobs_size());
  for (int i = 0; i < m.logprobs_size(); ++i)
    EXPECT_NEAR(m.logprobs(i), unary.response.logprobs(i), 1e-5);
  ASSERT_EQ(m.top_logprobs_size(), unary.response.top_logprobs_size());
  for (int i = 0; i < m.top_logprobs_size(); ++i) {
    EXPECT_EQ(ids(m.top_logprobs(i).token_ids()), ids(unary.response.top_logprobs(i).token_ids()));
  }
}

TEST_F(ServerE2E, GenerateStreamGreedyEqualsGenerate) {
  v1::GenerateRequest req = generate_request(
      {image_part(image_bytes("cat_face_28x28.png")), text_part("Once upon a time")}, 48);
  req.set_ignore_eos(true);
  req.mutable_sampling()->set_seed(77);  // greedy; the seed is only echoed
  expect_stream_equals_unary(*stub_, req);
}

TEST_F(ServerE2E, GenerateStreamSampledWithTopLogprobsEqualsGenerate) {
  // Sampling at a high temperature picks byte tokens, so incomplete UTF-8 must be held back.
  v1::GenerateRequest req = generate_request(
      {text_part("Zufällige Wörter: "), image_part(image_bytes("sun_cloud_70x35.png"))}, 48);
  req.set_ignore_eos(true);
  req.set_top_logprobs(2);
  req.mutable_sampling()->set_temperature(1.5f);
  req.mutable_sampling()->set_seed(4242);
  expect_stream_equals_unary(*stub_, req);
}

// ---- Score ----

TEST_F(ServerE2E, ScoreMatchesTheInProcessCli) {
  struct Case {
    std::string cli_prompt;
    std::vector<std::string> images;
    std::vector<v1::Part> parts;
  };
  const std::vector<std::string> candidates = {" a cat", " a wooden chair", "!"};
  const std::vector<Case> cases = {
      {"<image>Caption:",
       {"cat_face_28x28.png"},
       {image_part(image_bytes("cat_face_28x28.png")), text_part("Caption:")}},
      // The prompt ends with an image: each candidate becomes a new text part.
      {"<image>This is<image>",
       {"chair_baseline_100x80.jpg", "cat_face_28x28.png"},
       {image_part(image_bytes("chair_baseline_100x80.jpg")), text_part("This is"),
        image_part(image_bytes("cat_face_28x28.png"))}},
  };
  for (const Case& c : cases) {
    std::string args = "score --prompt " + shell_quote(c.cli_prompt);
    for (const std::string& img : c.images) args += " --image " + shell_quote(kImageDir + img);
    for (const std::string& cand : candidates) args += " --candidate " + shell_quote(cand);
    const std::vector<double> want = run_cli(args)["candidate_logprobs"].get<std::vector<double>>();

    v1::ScoreRequest req;
    for (const v1::Part& p : c.parts) *req.add_prompt() = p;
    for (const std::string& cand : candidates) req.add_candidates(cand);
    grpc::ClientContext ctx;
    set_timeout(ctx, Ms(60000));
    v1::ScoreResponse resp;
    const grpc::Status s = stub_->Score(&ctx, req, &resp);
    ASSERT_TRUE(s.ok()) << s.error_message();
    ASSERT_EQ(resp.logprobs_size(), static_cast<int>(want.size())) << c.cli_prompt;
    for (size_t i = 0; i < want.size(); ++i) {
      EXPECT_LT(resp.logprobs(i), 0.0);
      EXPECT_NEAR(resp.logprobs(i), want[i], 2e-3) << c.cli_prompt << " candidate " << i;
    }
  }
}

// ---- 32 concurrent mixed requests ----

struct MixedCase {
  v1::GenerateRequest request;
  bool stream = false;
};

std::vector<MixedCase> mixed_cases() {
  const std::vector<std::string> names = {"cat_face_28x28.png",
                                          "chair_baseline_100x80.jpg",
                                          "fish_progressive_84x63.jpg",
                                          "lamp_rgba_50x41.png",
                                          "leaf_42x42.png",
                                          "mug_P_60x60.png",
                                          "raindrops_L_25x47.png",
                                          "sun_cloud_70x35.png"};
  const std::vector<std::string> texts = {"A picture of",     "Describe the scene in detail:",
                                          "What do you see?", "Once upon a time there was",
                                          "Colours:",         "Ein Bild von"};
  std::vector<MixedCase> out;
  for (int i = 0; i < 32; ++i) {
    MixedCase c;
    const int n_images = i % 5;
    std::vector<v1::Part> parts;
    for (int k = 0; k < n_images; ++k) {
      parts.push_back(image_part(image_bytes(names[(i + 3 * k) % names.size()])));
      parts.push_back(text_part(texts[(i + k) % texts.size()] + " " + std::to_string(k)));
    }
    if (n_images == 0)
      parts.push_back(text_part(texts[i % texts.size()] + " #" + std::to_string(i)));
    c.request = generate_request(parts, 4 + (i * 7) % 40);
    c.request.set_ignore_eos(i % 2 == 0);
    if (i % 3 != 0) {  // seeded sampling; i % 3 == 0: greedy
      v1::SamplingParams* s = c.request.mutable_sampling();
      s->set_temperature(0.6f + 0.2f * static_cast<float>(i % 4));
      if (i % 2 == 1) s->set_top_k(20);
      if (i % 3 == 2) s->set_top_p(0.9f);
      if (i % 5 == 1) s->set_repetition_penalty(1.2f);
      s->set_seed(1000 + i);
    } else {
      c.request.mutable_sampling()->set_seed(500 + i);
    }
    c.request.set_request_id("mixed-" + std::to_string(i));
    c.stream = i % 4 == 1;
    out.push_back(std::move(c));
  }
  return out;
}

UnaryResult run_mixed(v1::Flamingo::Stub& stub, const MixedCase& c) {
  if (!c.stream) return call_generate(stub, c.request, Ms(120000));
  StreamResult s = call_stream(stub, c.request, Ms(120000));
  UnaryResult r;
  r.status = s.status;
  r.response = s.merged;
  return r;
}

TEST_F(ServerE2E, ThirtyTwoConcurrentMixedRequestsEqualTheirSoloResults) {
  const std::vector<MixedCase> cases = mixed_cases();
  std::vector<UnaryResult> solo;
  for (const MixedCase& c : cases) {  // one at a time
    solo.push_back(run_mixed(*stub_, c));
    ASSERT_TRUE(solo.back().status.ok()) << solo.back().status.error_message();
  }
  std::vector<UnaryResult> together(cases.size());
  {
    std::barrier sync(static_cast<std::ptrdiff_t>(cases.size()));
    std::vector<std::thread> threads;
    for (size_t i = 0; i < cases.size(); ++i) {
      threads.emplace_back([&, i] {
        auto stub = make_stub(default_server().address());
        sync.arrive_and_wait();
        together[i] = run_mixed(*stub, cases[i]);
      });
    }
    for (std::thread& t : threads) t.join();
  }
  int with_images = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE("request mixed-" + std::to_string(i));
    ASSERT_TRUE(together[i].status.ok()) << together[i].status.error_message();
    const v1::GenerateResponse& a = solo[i].response;
    const v1::GenerateResponse& b = together[i].response;
    EXPECT_EQ(ids(b.token_ids()), ids(a.token_ids()));
    EXPECT_EQ(b.text(), a.text());
    EXPECT_EQ(b.finish_reason(), a.finish_reason());
    EXPECT_EQ(b.usage().prompt_tokens(), a.usage().prompt_tokens());
    EXPECT_EQ(b.usage().images(), static_cast<int>(i % 5));
    EXPECT_EQ(b.seed(), cases[i].request.sampling().seed());
    if (cases[i].request.ignore_eos()) {
      EXPECT_EQ(b.token_ids_size(), cases[i].request.max_new_tokens());
    }
    with_images += b.usage().images() > 0;
  }
  EXPECT_GT(with_images, 0);
}

// ---- a request over gRPC's default 4 MiB receive limit ----

TEST_F(ServerE2E, RequestWithMoreThan4MiBOfImageDataSucceeds) {
  flamingo::testing::TempDir dir("flamingo_e2e_big");
  const std::string path = dir.file("noise.png");
  const std::string cmd = std::string(FLAMINGO_PYTHON3) +
                          " -c \"import os,sys; from PIL import Image; "
                          "Image.frombytes('RGB', (1300, 1300), os.urandom(1300 * 1300 * 3))"
                          ".save(sys.argv[1])\" " +
                          shell_quote(path);
  ASSERT_EQ(flamingo::testing::run_command(cmd).exit_code, 0) << cmd;
  const std::string png = read_file(path);
  ASSERT_GT(png.size(), 4.5 * 1024 * 1024);
  const UnaryResult r = call_generate(
      *stub_, generate_request({image_part(png), text_part("Noise:")}, 3), Ms(120000));
  ASSERT_TRUE(r.status.ok()) << StatusCode(r.status.error_code()) << " "
                             << r.status.error_message();
  EXPECT_EQ(r.response.usage().images(), 1);
  EXPECT_GE(r.response.token_ids_size(), 1);
}

// ---- reflection ----

// One bidi ServerReflectionInfo call through GenericStub: sends each request, returns the
// responses (raw bytes).
std::vector<std::string> reflection_call(const std::string& address,
                                         const std::vector<std::string>& requests) {
  auto channel = make_channel(address);
  grpc::GenericStub stub(channel);
  grpc::CompletionQueue cq;
  grpc::ClientContext ctx;
  set_timeout(ctx, Ms(10000));
  std::unique_ptr<grpc::GenericClientAsyncReaderWriter> call =
      stub.PrepareCall(&ctx, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", &cq);
  void* tag = nullptr;
  bool ok = false;
  auto next = [&] {
    cq.Next(&tag, &ok);
    return ok;
  };
  std::vector<std::string> out;
  call->StartCall(reinterpret_cast<void*>(1));
  if (next()) {
    for (const std::string& r : requests) {
      grpc::Slice slice(r);
      grpc::ByteBuffer buf(&slice, 1);
      call->Write(buf, reinterpret_cast<void*>(2));
      if (!next()) break;
    }
    call->WritesDone(reinterpret_cast<void*>(3));
    next();
    while (true) {
      grpc::ByteBuffer resp;
      call->Read(&resp, reinterpret_cast<void*>(4));
      if (!next()) break;
      out.push_back(byte_buffer_string(resp));
    }
  }
  grpc::Status status;
  call->Finish(&status, reinterpret_cast<void*>(5));
  next();
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
  if (!status.ok()) throw std::runtime_error("reflection call failed: " + status.error_message());
  return out;
}

TEST_F(ServerE2E, ReflectionListsAndDescribesTheService) {
  // ServerReflectionRequest: list_services = 7, file_containing_symbol = 4.
  const std::vector<std::string> responses =
      reflection_call(default_server().address(),
                      {wire_bytes_field(7, ""), wire_bytes_field(4, "flamingo.v1.Flamingo")});
  ASSERT_EQ(responses.size(), 2u);

  // ServerReflectionResponse.list_services_response = 6 -> ListServiceResponse.service = 1 ->
  // ServiceResponse.name = 1.
  std::vector<std::string> services;
  for (const WireField& f : parse_wire(responses[0])) {
    if (f.number != 6) continue;
    for (const WireField& s : parse_wire(f.bytes)) {
      if (s.number != 1) continue;
      for (const WireField& n : parse_wire(s.bytes))
        if (n.number == 1) services.push_back(n.bytes);
    }
  }
  EXPECT_NE(std::find(services.begin(), services.end(), "flamingo.v1.Flamingo"), services.end())
      << ::testing::PrintToString(services);
  EXPECT_NE(std::find(services.begin(), services.end(), "grpc.health.v1.Health"), services.end())
      << ::testing::PrintToString(services);

  // file_descriptor_response = 4 -> FileDescriptorResponse.file_descriptor_proto = 1 (bytes).
  bool found = false;
  for (const WireField& f : parse_wire(responses[1])) {
    if (f.number != 4) continue;
    for (const WireField& d : parse_wire(f.bytes)) {
      if (d.number != 1) continue;
      google::protobuf::FileDescriptorProto file;
      ASSERT_TRUE(file.ParseFromString(d.bytes));
      if (file.package() != "flamingo.v1") continue;
      for (const auto& service : file.service()) {
        if (service.name() != "Flamingo") continue;
        std::map<std::string, bool> methods;  // name -> server streaming
        for (const auto& m : service.method()) methods[m.name()] = m.server_streaming();
        EXPECT_EQ(methods.size(), 8u);
        for (const char* name : {"Generate", "GenerateStream", "Caption", "AnswerQuestion", "Score",
                                 "GetModelInfo", "Embed", "Classify"})
          EXPECT_TRUE(methods.count(name)) << name;
        EXPECT_TRUE(methods["GenerateStream"]);
        EXPECT_FALSE(methods["Generate"]);
        found = true;
      }
    }
  }
  EXPECT_TRUE(found) << "no descriptor of flamingo.v1.Flamingo in the reflection answer";
}

// ---- Prometheus metrics ----

// The value of the sample line `series value` (series with its labels exactly as rendered), or
// nullopt when absent.
std::optional<double> sample(const std::string& text, const std::string& series) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
  }
  return std::nullopt;
}

TEST_F(ServerE2E, PrometheusEndpointCountsRequestsAndHasHistograms) {
  default_server();
  const int port = default_server_slot().metrics_port;
  ASSERT_TRUE(default_server().wait_for_log("metrics on http://127.0.0.1:" + std::to_string(port),
                                            Ms(5000)));
  std::string before;
  ASSERT_EQ(http_get(port, "/metrics", &before), 200);
  const std::string ok = "flamingo_requests_total{rpc=\"Generate\",outcome=\"ok\",api=\"grpc\"}";
  const std::string bad =
      "flamingo_requests_total{rpc=\"Generate\",outcome=\"invalid_argument\",api=\"grpc\"}";
  const std::string ttft = "flamingo_time_to_first_token_seconds_count";
  const std::string generated = "flamingo_generated_tokens_total";

  for (int i = 0; i < 3; ++i) {
    const UnaryResult r =
        call_generate(*stub_, generate_request({text_part("count me " + std::to_string(i))}, 5));
    ASSERT_TRUE(r.status.ok());
  }
  v1::GenerateRequest empty;  // no prompt: INVALID_ARGUMENT
  ASSERT_EQ(call_generate(*stub_, empty).status.error_code(), StatusCode::INVALID_ARGUMENT);

  std::string after;
  ASSERT_EQ(http_get(port, "/metrics", &after), 200);
  EXPECT_EQ(sample(after, ok).value_or(-1) - sample(before, ok).value_or(0), 3) << after;
  EXPECT_EQ(sample(after, bad).value_or(-1) - sample(before, bad).value_or(0), 1) << after;
  EXPECT_GE(sample(after, ttft).value_or(-1) - sample(before, ttft).value_or(0), 3) << after;
  EXPECT_GE(sample(after, generated).value_or(-1) - sample(before, generated).value_or(0), 3);
  for (const char* h :
       {"flamingo_time_to_first_token_seconds", "flamingo_inter_token_latency_seconds",
        "flamingo_request_duration_seconds"}) {
    const std::string name = h;
    EXPECT_NE(after.find("# TYPE " + name + " histogram"), std::string::npos) << name;
    EXPECT_TRUE(sample(after, name + "_bucket{le=\"+Inf\"}").has_value()) << name;
    EXPECT_TRUE(sample(after, name + "_sum").has_value()) << name;
    EXPECT_EQ(sample(after, name + "_bucket{le=\"+Inf\"}"), sample(after, name + "_count")) << name;
  }
  EXPECT_GT(sample(after, "flamingo_inter_token_latency_seconds_count").value_or(0), 0);
  for (const char* g :
       {"flamingo_queue_length", "flamingo_running_requests", "flamingo_kv_blocks_used",
        "flamingo_kv_blocks_free", "flamingo_prompt_tokens_total"}) {
    EXPECT_TRUE(sample(after, g).has_value()) << g;
  }
  std::string missing;
  EXPECT_EQ(http_get(port, "/nope", &missing), 404);
}

}  // namespace
}  // namespace flamingo::e2e
