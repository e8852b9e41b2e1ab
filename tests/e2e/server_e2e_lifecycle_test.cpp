// End-to-end tests of flamingo-server's request lifecycle (issue 3, ctest label e2e): a real
// server process on a loopback port and the generated gRPC C++ stubs. Client cancellation and
// deadlines end a running request early and return its KV blocks; overload is answered
// RESOURCE_EXHAUSTED; health goes NOT_SERVING (loading) -> SERVING -> NOT_SERVING (draining);
// SIGTERM drains every accepted request and exits 0; after SIGKILL a restart serves again.
#include <gtest/gtest.h>

#include <barrier>
#include <chrono>

#include "tests/e2e/server_e2e_util.h"

namespace flamingo::e2e {
namespace {

using grpc::StatusCode;

[[maybe_unused]] ::testing::Environment* const kEnv =
    ::testing::AddGlobalTestEnvironment(new DefaultServerEnvironment);

// "completion_tokens=N" of the server's log line for request `id` (logged after `from`).
std::optional<int> logged_completion_tokens(const ServerProcess& server, const std::string& id,
                                            size_t from, std::string* line_out = nullptr) {
  const std::optional<std::string> line =
      server.wait_for_line("request " + id + " ", Ms(10000), from);
  if (!line) return std::nullopt;
  if (line_out) *line_out = *line;
  const std::string key = "completion_tokens=";
  const size_t at = line->find(key);
  if (at == std::string::npos) return std::nullopt;
  return std::stoi(line->substr(at + key.size()));
}

class LifecycleE2E : public DefaultServerTest {};

TEST_F(LifecycleE2E, CancelMidStreamFreesKvBlocksAndTheServerKeepsServing) {
  ServerProcess& server = default_server();
  const v1::ModelInfo idle = wait_kv_idle(*stub_);
  ASSERT_EQ(idle.kv_blocks_free(), idle.kv_blocks_total());
  const size_t log_from = server.log_size();

  grpc::ClientContext ctx;
  set_timeout(ctx, Ms(60000));
  auto reader = stub_->GenerateStream(&ctx, long_request("e2e-cancel"));
  v1::GenerateChunk chunk;
  int tokens = 0;
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(reader->Read(&chunk)) << "chunk " << i;
    tokens += chunk.token_ids_size();
  }
  const v1::ModelInfo busy = model_info(*stub_);
  EXPECT_LT(busy.kv_blocks_free(), busy.kv_blocks_total()) << "the running request holds blocks";
  ctx.TryCancel();
  while (reader->Read(&chunk)) tokens += chunk.token_ids_size();
  const grpc::Status status = reader->Finish();
  EXPECT_EQ(status.error_code(), StatusCode::CANCELLED) << status.error_message();
  EXPECT_LT(tokens, 1024);

  std::string line;
  const std::optional<int> done = logged_completion_tokens(server, "e2e-cancel", log_from, &line);
  ASSERT_TRUE(done.has_value()) << "no log line for the cancelled request";
  EXPECT_LT(*done, 1024) << "the engine stopped generating: " << line;
  EXPECT_NE(line.find("finish=cancelled"), std::string::npos) << line;

  const v1::ModelInfo after = wait_kv_idle(*stub_, Ms(5000));
  EXPECT_EQ(after.kv_blocks_free(), after.kv_blocks_total());

  const UnaryResult next = call_generate(*stub_, generate_request({text_part("still there?")}, 4));
  EXPECT_TRUE(next.status.ok()) << next.status.error_message();
  EXPECT_EQ(next.response.token_ids_size() > 0, true);
}

TEST_F(LifecycleE2E, DeadlineExceededEndsTheRequestAndFreesKvBlocks) {
  ServerProcess& server = default_server();
  const v1::ModelInfo idle = wait_kv_idle(*stub_);
  ASSERT_EQ(idle.kv_blocks_free(), idle.kv_blocks_total());

  // The deadlines are a quarter (unary) and a third (streaming: the first chunks arrive) of
  // what the same 1024-token request takes without one here, measured first, so that it
  // outlasts them however fast this machine is.
  const auto t0 = std::chrono::steady_clock::now();
  const UnaryResult full = call_generate(*stub_, long_request("e2e-deadline-full"));
  const auto took = std::chrono::duration_cast<Ms>(std::chrono::steady_clock::now() - t0);
  ASSERT_TRUE(full.status.ok()) << full.status.error_message();
  ASSERT_EQ(full.response.token_ids_size(), 1024);

  size_t log_from = server.log_size();
  const UnaryResult unary = call_generate(*stub_, long_request("e2e-deadline-unary"), took / 4);
  EXPECT_EQ(unary.status.error_code(), StatusCode::DEADLINE_EXCEEDED)
      << unary.status.error_message();
  std::string line;
  std::optional<int> done = logged_completion_tokens(server, "e2e-deadline-unary", log_from, &line);
  ASSERT_TRUE(done.has_value()) << "no log line for the request";
  EXPECT_LT(*done, 1024) << line;
  EXPECT_TRUE(line.find("finish=deadline") != std::string::npos ||
              line.find("finish=cancelled") != std::string::npos)
      << line;
  v1::ModelInfo after = wait_kv_idle(*stub_, Ms(5000));
  EXPECT_EQ(after.kv_blocks_free(), after.kv_blocks_total());

  // Streaming: the deadline passes after the first chunks.
  log_from = server.log_size();
  const StreamResult stream = call_stream(*stub_, long_request("e2e-deadline-stream"), took / 3);
  EXPECT_EQ(stream.status.error_code(), StatusCode::DEADLINE_EXCEEDED)
      << stream.status.error_message();
  done = logged_completion_tokens(server, "e2e-deadline-stream", log_from, &line);
  ASSERT_TRUE(done.has_value()) << "no log line for the request";
  EXPECT_LT(*done, 1024) << line;
  after = wait_kv_idle(*stub_, Ms(5000));
  EXPECT_EQ(after.kv_blocks_free(), after.kv_blocks_total());

  const UnaryResult next = call_generate(*stub_, generate_request({text_part("next")}, 4));
  EXPECT_TRUE(next.status.ok()) << next.status.error_message();
}

TEST(OverloadE2E, BeyondRunningPlusQueuedIsResourceExhausted) {
  std::unique_ptr<ServerProcess> server = start_server({"--max-running", "1", "--max-queued", "1"});
  constexpr int kCalls = 6;
  constexpr int kTokens = 300;
  std::vector<UnaryResult> results(kCalls);
  std::vector<double> seconds(kCalls);
  {
    std::barrier sync(kCalls);
    std::vector<std::thread> threads;
    for (int i = 0; i < kCalls; ++i) {
      threads.emplace_back([&, i] {
        auto stub = make_stub(server->address());
        // Connect first so that all calls reach the server together.
        grpc::ClientContext connect_ctx;
        v1::ModelInfo info;
        stub->GetModelInfo(&connect_ctx, v1::ModelInfoRequest(), &info);
        sync.arrive_and_wait();
        const auto t0 = std::chrono::steady_clock::now();
        results[i] = call_generate(*stub, long_request("overload-" + std::to_string(i), kTokens));
        seconds[i] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      });
    }
    for (std::thread& t : threads) t.join();
  }
  int ok = 0, exhausted = 0;
  for (int i = 0; i < kCalls; ++i) {
    const UnaryResult& r = results[i];
    if (r.status.ok()) {
      ++ok;
      EXPECT_EQ(r.response.token_ids_size(), kTokens) << "accepted request " << i << " completes";
      EXPECT_EQ(r.response.finish_reason(), v1::LENGTH);
    } else {
      EXPECT_EQ(r.status.error_code(), StatusCode::RESOURCE_EXHAUSTED) << r.status.error_message();
      EXPECT_NE(r.status.error_message().find("--max-queued"), std::string::npos)
          << r.status.error_message();
      exhausted += r.status.error_code() == StatusCode::RESOURCE_EXHAUSTED;
    }
  }
  EXPECT_GE(ok, 1);
  EXPECT_GE(exhausted, 1);
  EXPECT_LE(ok, kCalls - 1);
  {  // Still serving afterwards. (The channel closes before SIGTERM: with a connected client
     // the server's shutdown waits out its 5 s grace period.)
    auto stub = make_stub(server->address());
    EXPECT_TRUE(call_generate(*stub, generate_request({text_part("after")}, 3)).status.ok());
  }
  EXPECT_EQ(stop_server(*server), std::optional<int>(0));
  if (HasFailure() || verbose()) std::cerr << server->describe() << "\n";
}

// Polls health for `service` until it is `want`; returns the last answer.
HealthResult wait_health(const std::shared_ptr<grpc::Channel>& channel, const std::string& service,
                         Health want, Ms timeout = Ms(10000)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  HealthResult r = health_check(channel, service);
  while (!(r.status.ok() && r.health == want) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(Ms(10));
    r = health_check(channel, service);
  }
  return r;
}

// A stop while the model loads (minutes for a 9b checkpoint) ends the process at once: no
// request was accepted, so there is nothing to drain, and "ready" is never logged.
TEST(HealthE2E, StopWhileLoadingExitsAtOnce) {
  std::unique_ptr<ServerProcess> server =
      start_server({"--load-delay-ms", "60000"}, /*wait_ready=*/false);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(stop_server(*server, Ms(5000)), std::optional<int>(0)) << server->describe();
  EXPECT_LT(std::chrono::steady_clock::now() - start, Ms(5000));
  EXPECT_FALSE(server->wait_for_log(" ready", Ms(0))) << server->describe();
  EXPECT_TRUE(server->wait_for_log("while loading: exiting", Ms(0))) << server->describe();
}

TEST(HealthE2E, NotServingWhileLoadingServingWhenReadyNotServingWhileDraining) {
  std::unique_ptr<ServerProcess> server =
      start_server({"--load-delay-ms", "2000"}, /*wait_ready=*/false);
  auto channel = make_channel(server->address());
  auto stub = v1::Flamingo::NewStub(channel);

  // Loading.
  for (const std::string service : {"", kServiceName}) {
    const HealthResult h = health_check(channel, service);
    ASSERT_TRUE(h.status.ok()) << "'" << service << "': " << h.status.error_message();
    EXPECT_EQ(h.health, Health::kNotServing) << "'" << service << "'";
  }
  {
    const UnaryResult g = call_generate(*stub, generate_request({text_part("hi")}, 2), Ms(5000));
    EXPECT_EQ(g.status.error_code(), StatusCode::UNAVAILABLE) << g.status.error_message();
    EXPECT_NE(g.status.error_message().find("loading"), std::string::npos)
        << g.status.error_message();
    const StreamResult s = call_stream(*stub, generate_request({text_part("hi")}, 2), Ms(5000));
    EXPECT_EQ(s.status.error_code(), StatusCode::UNAVAILABLE) << s.status.error_message();
    grpc::ClientContext ctx;
    v1::ModelInfo info;
    EXPECT_EQ(stub->GetModelInfo(&ctx, v1::ModelInfoRequest(), &info).error_code(),
              StatusCode::UNAVAILABLE);
    grpc::ClientContext sctx;
    v1::ScoreRequest sreq;
    *sreq.add_prompt() = text_part("a");
    sreq.add_candidates("b");
    v1::ScoreResponse sresp;
    EXPECT_EQ(stub->Score(&sctx, sreq, &sresp).error_code(), StatusCode::UNAVAILABLE);
  }
  EXPECT_FALSE(server->wait_for_log(" ready", Ms(0)))
      << "the model loaded before the checks ran: they did not see the loading state";

  // Ready.
  server->wait_ready();
  for (const std::string service : {"", kServiceName}) {
    const HealthResult h = wait_health(channel, service, Health::kServing, Ms(5000));
    ASSERT_TRUE(h.status.ok()) << h.status.error_message();
    EXPECT_EQ(h.health, Health::kServing) << "'" << service << "'";
  }
  EXPECT_EQ(health_check(channel, "no.such.Service").status.error_code(), StatusCode::NOT_FOUND);

  // Draining: a long request is running when SIGTERM arrives.
  grpc::ClientContext ctx;
  set_timeout(ctx, Ms(60000));
  auto reader = stub->GenerateStream(&ctx, long_request("health-drain", 600));
  v1::GenerateChunk chunk;
  ASSERT_TRUE(reader->Read(&chunk));
  int tokens = chunk.token_ids_size();
  ASSERT_TRUE(server->send_signal(SIGTERM));
  for (const std::string service : {"", kServiceName}) {
    const HealthResult h = wait_health(channel, service, Health::kNotServing, Ms(5000));
    EXPECT_TRUE(h.status.ok()) << h.status.error_message();
    EXPECT_EQ(h.health, Health::kNotServing) << "'" << service << "'";
  }
  while (reader->Read(&chunk)) tokens += chunk.token_ids_size();
  const grpc::Status status = reader->Finish();
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(tokens, 600);
  // Disconnect: while a client stays connected the server's shutdown waits out its grace period.
  reader.reset();
  stub.reset();
  channel.reset();
  EXPECT_EQ(server->wait_exit(Ms(30000)), std::optional<int>(0)) << server->describe();
  if (HasFailure() || verbose()) std::cerr << server->describe() << "\n";
}

TEST(DrainE2E, SigtermLosesNoAcceptedRequestAndExitsZero) {
  std::unique_ptr<ServerProcess> server = start_server({});
  constexpr int kStreams = 6;
  constexpr int kTokens = 200;
  std::vector<v1::GenerateRequest> requests;
  for (int i = 0; i < kStreams; ++i)
    requests.push_back(long_request("drain-" + std::to_string(i), kTokens));
  StreamsInFlight streams(server->address(), requests);
  // Every stream has its first chunk.
  ASSERT_TRUE(streams.wait_first_chunks(Ms(30000))) << server->describe();

  const size_t log_from = server->log_size();
  ASSERT_TRUE(server->send_signal(SIGTERM));
  ASSERT_TRUE(server->wait_for_log("received SIGTERM", Ms(10000), log_from)) << server->describe();
  {  // (scoped: the channel must close before the exit, see HealthE2E)
    auto channel = make_channel(server->address());
    const HealthResult h = wait_health(channel, "", Health::kNotServing, Ms(5000));
    // Once the server stopped listening, the health call itself is refused (UNAVAILABLE).
    EXPECT_TRUE((h.status.ok() && h.health == Health::kNotServing) ||
                h.status.error_code() == StatusCode::UNAVAILABLE)
        << h.status.error_message();

    // New calls after the signal: UNAVAILABLE (shutting down, or connection refused).
    auto stub = v1::Flamingo::NewStub(channel);
    const UnaryResult late =
        call_generate(*stub, generate_request({text_part("late")}, 2), Ms(5000));
    EXPECT_EQ(late.status.error_code(), StatusCode::UNAVAILABLE) << late.status.error_message();
    const StreamResult late_stream =
        call_stream(*stub, generate_request({text_part("late")}, 2), Ms(5000));
    EXPECT_EQ(late_stream.status.error_code(), StatusCode::UNAVAILABLE)
        << late_stream.status.error_message();
  }
  const std::vector<StreamOutcome>& outcomes = streams.join();
  for (int i = 0; i < kStreams; ++i) {
    SCOPED_TRACE("stream drain-" + std::to_string(i));
    EXPECT_TRUE(outcomes[i].status.ok()) << outcomes[i].status.error_message();
    EXPECT_EQ(outcomes[i].tokens, kTokens);
    EXPECT_EQ(outcomes[i].usage_completion, kTokens);
    EXPECT_EQ(outcomes[i].finish, v1::LENGTH);
  }
  EXPECT_EQ(server->wait_exit(Ms(30000)), std::optional<int>(0)) << server->describe();
  EXPECT_TRUE(server->wait_for_log("stopped", Ms(1000), log_from));
  if (HasFailure() || verbose()) std::cerr << server->describe() << "\n";
}

// SIGKILL under load, then a restart on the same ports: the server keeps no state outside its
// process (the KV cache, image cache, prefix cache and queues live in memory; nothing is
// written to disk), so there is nothing to recover or corrupt. The killed server's clients get
// an error status, not a silent end; the new process loads, turns SERVING and answers.
TEST(DrainE2E, SigkillUnderLoadThenARestartOnTheSamePortsServes) {
  const int http_port = free_port();
  // Streams that outlast the kill by far: the tiny model decodes 1000 tokens in well under a
  // second.
  const std::vector<std::string> flags = {"--http-port",      std::to_string(http_port),
                                          "--context-length", "8192",
                                          "--max-new-tokens", "8000"};
  std::unique_ptr<ServerProcess> server = start_server(flags);
  const int port = server->port();
  std::vector<v1::GenerateRequest> requests;
  for (int i = 0; i < 4; ++i) requests.push_back(long_request("kill-" + std::to_string(i), 8000));
  StreamsInFlight streams(server->address(), requests);
  ASSERT_TRUE(streams.wait_first_chunks(Ms(30000))) << server->describe();
  ASSERT_TRUE(server->send_signal(SIGKILL));
  EXPECT_EQ(server->wait_exit(Ms(10000)), std::optional<int>(128 + SIGKILL));
  for (const StreamOutcome& o : streams.join()) {
    EXPECT_FALSE(o.status.ok()) << "a stream of the killed server ended OK";
    EXPECT_EQ(o.status.error_code(), StatusCode::UNAVAILABLE) << o.status.error_message();
    EXPECT_GT(o.tokens, 0);  // it was running
    EXPECT_LT(o.tokens, 8000);
  }

  std::vector<std::string> same_ports = flags;
  same_ports.insert(same_ports.end(), {"--port", std::to_string(port)});
  std::unique_ptr<ServerProcess> again = start_server(same_ports);
  EXPECT_EQ(again->port(), port);
  auto channel = make_channel(again->address());
  EXPECT_EQ(wait_health(channel, "", Health::kServing, Ms(10000)).health, Health::kServing);
  auto stub = v1::Flamingo::NewStub(channel);
  const UnaryResult r = call_generate(*stub, generate_request({text_part("again")}, 4));
  EXPECT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.response.usage().completion_tokens(), 4);
  std::string body;
  EXPECT_EQ(http_get(http_port, "/health", &body), 200) << body;
  channel.reset();
  stub.reset();
  EXPECT_EQ(stop_server(*again), std::optional<int>(0)) << again->describe();
}

}  // namespace
}  // namespace flamingo::e2e
