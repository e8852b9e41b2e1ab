// Shared helpers of the server end-to-end tests (tests/e2e/server_e2e_*_test.cpp): starting
// flamingo-server processes (one lazily started default server per test binary, stopped with
// SIGTERM at the end), gRPC channels and stubs, request builders, streams kept in flight on
// their own threads, a generic (stub-less) unary call used for grpc.health.v1.Health, a minimal
// protobuf wire reader, a raw HTTP GET and an independent UTF-8 validator. Torch-free.
// Thread-safety: the request helpers are reentrant; default_server() must be first called from
// the test's main thread (the server process dies with the thread that forked it); a
// StreamsInFlight is used from the thread that made it.
#pragma once

#include <arpa/inet.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <latch>
#include <memory>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "flamingo/v1/flamingo.grpc.pb.h"
#include "tests/common/server_process.h"
#include "tests/e2e/http_client.h"

namespace flamingo::e2e {

namespace v1 = ::flamingo::v1;
using ::flamingo::testing::ServerProcess;
using Ms = std::chrono::milliseconds;

inline const std::string kServerBinary = std::string(FLAMINGO_BINARY_DIR) + "/bin/flamingo-server";
inline const std::string kCliBinary = std::string(FLAMINGO_BINARY_DIR) + "/bin/flamingo-cli";
// The model these tests serve unless they name one: the tiny random IDEFICS the build
// generates (the programs' own default is the trained demo model, models/flamingo-demo).
inline const std::string kDefaultModel =
    std::string(FLAMINGO_BINARY_DIR) + "/models/idefics-tiny-random";
inline const std::string kImageDir = std::string(FLAMINGO_GOLDEN_DIR) + "/images/";
inline constexpr const char* kServiceName = "flamingo.v1.Flamingo";

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  return {std::istreambuf_iterator<char>(in), {}};
}

inline std::string image_bytes(const std::string& name) { return read_file(kImageDir + name); }

// True when 127.0.0.1:port can be bound now.
inline bool port_is_free(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw std::runtime_error("socket failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  const bool ok = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return ok;
}

// A port that was free a moment ago, for a server flag that needs a number. It is drawn below
// the kernel's ephemeral range (/proc/sys/net/ipv4/ip_local_port_range), so that no port-0
// bind (the server's own gRPC --port 0) and no outgoing connection can be given it between
// this test choosing it and the server binding it: a port read back from a bind to port 0
// was once handed to the same server's gRPC listener a moment later (HTTP then could not bind).
inline int free_port() {
  int ephemeral_low = 32768;
  if (std::ifstream range("/proc/sys/net/ipv4/ip_local_port_range"); range) range >> ephemeral_low;
  const int low = 10000, high = ephemeral_low;
  if (high - low >= 1000) {
    std::mt19937 rng(
        static_cast<uint32_t>(getpid()) * 2654435761u ^
        static_cast<uint32_t>(std::chrono::steady_clock::now().time_since_epoch().count()));
    for (int attempt = 0; attempt < 100; ++attempt) {
      const int port = low + static_cast<int>(rng() % static_cast<uint32_t>(high - low));
      if (port_is_free(port)) return port;
    }
  }
  throw std::runtime_error("no free loopback port in [" + std::to_string(low) + ", " +
                           std::to_string(high) + ")");
}

// Starts flamingo-server on a free loopback port (--port 0), the HTTP API off unless `args`
// names --http-port, on kDefaultModel unless `args` names --model, with `args` added; waits
// for the
// "listening" line and, unless wait_ready is false, for "ready". `env` ("NAME=value" entries)
// is added to the server's environment through /usr/bin/env, which execs the server in its
// own place (same process, so signals and the exit code are the server's).
inline std::unique_ptr<ServerProcess> start_server(std::vector<std::string> args,
                                                   bool wait_ready = true,
                                                   const std::vector<std::string>& env = {}) {
  std::vector<std::string> all = {"--host", "127.0.0.1", "--port", "0", "--dtype", "float32"};
  bool has_metrics = false, has_http = false, has_model = false;
  for (const std::string& a : args) {
    has_metrics |= a == "--metrics-port";
    has_http |= a == "--http-port";
    has_model |= a == "--model" || a.rfind("--model=", 0) == 0;
  }
  if (!has_model) all.insert(all.end(), {"--model", kDefaultModel});
  if (!has_metrics) all.insert(all.end(), {"--metrics-port", "0"});
  if (!has_http) all.insert(all.end(), {"--http-port", "0"});  // off (its default is 8000)
  all.insert(all.end(), args.begin(), args.end());
  std::string binary = kServerBinary;
  if (!env.empty()) {
    all.insert(all.begin(), kServerBinary);
    all.insert(all.begin(), env.begin(), env.end());
    binary = "/usr/bin/env";
  }
  auto server = std::make_unique<ServerProcess>(binary, all);
  server->wait_listening(Ms(30000));
  if (wait_ready) server->wait_ready(Ms(60000));
  return server;
}

// SIGTERM, then the exit code (nullopt when it did not exit within `timeout`).
inline std::optional<int> stop_server(ServerProcess& server, Ms timeout = Ms(30000)) {
  server.send_signal(SIGTERM);
  return server.wait_exit(timeout);
}

// The default server shared by the tests of one binary: default flags except --dtype float32
// and a Prometheus port; started on first use, stopped (SIGTERM, exit code 0 expected) by
// DefaultServerEnvironment.
struct DefaultServer {
  std::unique_ptr<ServerProcess> process;
  int metrics_port = 0;
};

inline DefaultServer& default_server_slot() {
  static DefaultServer slot;
  return slot;
}

inline ServerProcess& default_server() {
  DefaultServer& s = default_server_slot();
  for (int attempt = 0; !s.process; ++attempt) {
    // The free port may be taken by someone else before the server binds it: retry.
    s.metrics_port = free_port();
    try {
      s.process = start_server({"--metrics-port", std::to_string(s.metrics_port)});
    } catch (const std::exception&) {
      if (attempt == 2) throw;
    }
  }
  return *s.process;
}

class DefaultServerEnvironment : public ::testing::Environment {
 public:
  void TearDown() override {
    DefaultServer& s = default_server_slot();
    if (!s.process) return;
    const std::optional<int> code = stop_server(*s.process);
    EXPECT_EQ(code, std::optional<int>(0)) << s.process->describe();
    s.process.reset();
  }
};

inline std::shared_ptr<grpc::Channel> make_channel(const std::string& address) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_ENABLE_HTTP_PROXY, 0);
  args.SetMaxSendMessageSize(-1);
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
}

inline std::unique_ptr<v1::Flamingo::Stub> make_stub(const std::string& address) {
  return v1::Flamingo::NewStub(make_channel(address));
}

inline void set_timeout(grpc::ClientContext& ctx, Ms timeout) {
  ctx.set_deadline(std::chrono::system_clock::now() + timeout);
}

// ---- requests ----

inline v1::Part text_part(const std::string& text) {
  v1::Part p;
  p.set_text(text);
  return p;
}

inline v1::Part image_part(const std::string& bytes) {
  v1::Part p;
  p.mutable_image()->set_data(bytes);
  return p;
}

inline v1::GenerateRequest generate_request(const std::vector<v1::Part>& parts,
                                            int32_t max_new_tokens) {
  v1::GenerateRequest r;
  for (const v1::Part& p : parts) *r.add_prompt() = p;
  r.set_max_new_tokens(max_new_tokens);
  return r;
}

struct UnaryResult {
  grpc::Status status;
  v1::GenerateResponse response;
};

inline UnaryResult call_generate(v1::Flamingo::Stub& stub, const v1::GenerateRequest& request,
                                 Ms timeout = Ms(60000)) {
  grpc::ClientContext ctx;
  set_timeout(ctx, timeout);
  UnaryResult r;
  r.status = stub.Generate(&ctx, request, &r.response);
  return r;
}

struct StreamResult {
  grpc::Status status;
  std::vector<v1::GenerateChunk> chunks;
  // The chunks concatenated (text, token_ids, logprobs, top_logprobs) with the last chunk's
  // finish_reason, usage and seed.
  v1::GenerateResponse merged;
};

inline v1::GenerateResponse merge_chunks(const std::vector<v1::GenerateChunk>& chunks) {
  v1::GenerateResponse m;
  for (const v1::GenerateChunk& c : chunks) {
    m.mutable_text()->append(c.text());
    for (int32_t t : c.token_ids()) m.add_token_ids(t);
    for (float lp : c.logprobs()) m.add_logprobs(lp);
    for (const v1::TopLogprobs& t : c.top_logprobs()) *m.add_top_logprobs() = t;
  }
  if (!chunks.empty()) {
    m.set_finish_reason(chunks.back().finish_reason());
    if (chunks.back().has_usage()) *m.mutable_usage() = chunks.back().usage();
    m.set_seed(chunks.back().seed());
  }
  return m;
}

inline StreamResult call_stream(v1::Flamingo::Stub& stub, const v1::GenerateRequest& request,
                                Ms timeout = Ms(60000)) {
  grpc::ClientContext ctx;
  set_timeout(ctx, timeout);
  StreamResult r;
  std::unique_ptr<grpc::ClientReader<v1::GenerateChunk>> reader =
      stub.GenerateStream(&ctx, request);
  v1::GenerateChunk chunk;
  while (reader->Read(&chunk)) r.chunks.push_back(chunk);
  r.status = reader->Finish();
  r.merged = merge_chunks(r.chunks);
  return r;
}

inline v1::ModelInfo model_info(v1::Flamingo::Stub& stub) {
  grpc::ClientContext ctx;
  set_timeout(ctx, Ms(10000));
  v1::ModelInfo info;
  const grpc::Status s = stub.GetModelInfo(&ctx, v1::ModelInfoRequest(), &info);
  if (!s.ok()) throw std::runtime_error("GetModelInfo failed: " + s.error_message());
  return info;
}

// Polls GetModelInfo until kv_blocks_free == kv_blocks_total; returns the last ModelInfo.
inline v1::ModelInfo wait_kv_idle(v1::Flamingo::Stub& stub, Ms timeout = Ms(10000)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  v1::ModelInfo info = model_info(stub);
  while (info.kv_blocks_free() != info.kv_blocks_total() &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(Ms(10));
    info = model_info(stub);
  }
  return info;
}

// A request that keeps the server busy: an image and "Tell me a very long story:" with
// ignore_eos, so it runs for exactly max_new_tokens tokens, under request id `id`.
inline v1::GenerateRequest long_request(const std::string& id, int32_t max_new_tokens = 1024) {
  v1::GenerateRequest req = generate_request(
      {image_part(image_bytes("cat_face_28x28.png")), text_part("Tell me a very long story:")},
      max_new_tokens);
  req.set_ignore_eos(true);
  req.set_request_id(id);
  return req;
}

// What one stream of StreamsInFlight got.
struct StreamOutcome {
  grpc::Status status;
  int tokens = 0;
  int chunks = 0;
  v1::FinishReason finish = v1::FINISH_REASON_UNSPECIFIED;
  int usage_completion = -1;  // usage.completion_tokens, when a chunk carried usage
};

// GenerateStream calls in flight at once: one thread and stub (60 s deadline) per request,
// each reading every chunk. wait_first_chunks() waits until every stream has had its first
// chunk (or ended); join() waits for all of them to end, after which the outcomes are final.
// The destructor joins, so a failed ASSERT before join() leaves no thread running.
class StreamsInFlight {
 public:
  StreamsInFlight(const std::string& address, const std::vector<v1::GenerateRequest>& requests)
      : outcomes_(requests.size()), first_chunks_(static_cast<std::ptrdiff_t>(requests.size())) {
    for (size_t i = 0; i < requests.size(); ++i) {
      threads_.emplace_back([this, address, request = requests[i], i] {
        auto stub = make_stub(address);
        grpc::ClientContext ctx;
        set_timeout(ctx, Ms(60000));
        auto reader = stub->GenerateStream(&ctx, request);
        v1::GenerateChunk chunk;
        bool counted = false;
        StreamOutcome& o = outcomes_[i];
        while (reader->Read(&chunk)) {
          o.tokens += chunk.token_ids_size();
          ++o.chunks;
          if (chunk.finish_reason() != v1::FINISH_REASON_UNSPECIFIED)
            o.finish = chunk.finish_reason();
          if (chunk.has_usage()) o.usage_completion = chunk.usage().completion_tokens();
          if (!counted) {
            counted = true;
            first_chunks_.count_down();
          }
        }
        if (!counted) first_chunks_.count_down();
        o.status = reader->Finish();
      });
    }
  }
  ~StreamsInFlight() { join(); }
  StreamsInFlight(const StreamsInFlight&) = delete;
  StreamsInFlight& operator=(const StreamsInFlight&) = delete;

  // True once every stream has had its first chunk or ended; false after `timeout` (a latch
  // has no timed wait, so this polls).
  bool wait_first_chunks(Ms timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!first_chunks_.try_wait() && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(Ms(2));
    return first_chunks_.try_wait();
  }

  // Waits for every stream to end; returns the outcomes, in the order of the requests.
  const std::vector<StreamOutcome>& join() {
    for (std::thread& t : threads_) {
      if (t.joinable()) t.join();
    }
    return outcomes_;
  }

 private:
  std::vector<StreamOutcome> outcomes_;
  std::latch first_chunks_;
  std::vector<std::thread> threads_;
};

// ---- raw protobuf wire format (for services without generated stubs) ----

inline void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7F) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

// A length-delimited field (string, bytes or sub-message).
inline std::string wire_bytes_field(int field, const std::string& value) {
  std::string out;
  put_varint(out, (static_cast<uint64_t>(field) << 3) | 2);
  put_varint(out, value.size());
  return out + value;
}

struct WireField {
  int number = 0;
  int wire_type = 0;
  uint64_t varint = 0;  // wire type 0
  std::string bytes;    // wire type 2
};

// Parses one message level; throws on malformed input (groups and fixed types are skipped).
inline std::vector<WireField> parse_wire(const std::string& data) {
  std::vector<WireField> out;
  size_t i = 0;
  auto varint = [&]() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (i >= data.size()) throw std::runtime_error("truncated varint");
      const uint8_t b = static_cast<uint8_t>(data[i++]);
      v |= static_cast<uint64_t>(b & 0x7F) << shift;
      if (!(b & 0x80)) return v;
    }
    throw std::runtime_error("varint too long");
  };
  while (i < data.size()) {
    WireField f;
    const uint64_t key = varint();
    f.number = static_cast<int>(key >> 3);
    f.wire_type = static_cast<int>(key & 7);
    if (f.wire_type == 0) {
      f.varint = varint();
    } else if (f.wire_type == 2) {
      const uint64_t n = varint();
      if (i + n > data.size()) throw std::runtime_error("truncated field");
      f.bytes = data.substr(i, n);
      i += n;
    } else if (f.wire_type == 1) {
      i += 8;
    } else if (f.wire_type == 5) {
      i += 4;
    } else {
      throw std::runtime_error("unsupported wire type " + std::to_string(f.wire_type));
    }
    out.push_back(std::move(f));
  }
  return out;
}

inline std::string byte_buffer_string(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  std::string out;
  if (!buffer.Dump(&slices).ok()) return out;
  for (const grpc::Slice& s : slices)
    out.append(reinterpret_cast<const char*>(s.begin()), s.size());
  return out;
}

// A unary call with raw request/response bytes through grpc::GenericStub.
inline grpc::Status generic_unary(const std::shared_ptr<grpc::Channel>& channel,
                                  const std::string& method, const std::string& request,
                                  std::string* response, Ms timeout = Ms(5000)) {
  grpc::GenericStub stub(channel);
  grpc::CompletionQueue cq;
  grpc::ClientContext ctx;
  set_timeout(ctx, timeout);
  grpc::Slice slice(request);
  grpc::ByteBuffer req(&slice, 1);
  std::unique_ptr<grpc::GenericClientAsyncResponseReader> call =
      stub.PrepareUnaryCall(&ctx, method, req, &cq);
  call->StartCall();
  grpc::ByteBuffer resp;
  grpc::Status status;
  call->Finish(&resp, &status, reinterpret_cast<void*>(1));
  void* tag = nullptr;
  bool ok = false;
  cq.Next(&tag, &ok);
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
  if (status.ok()) *response = byte_buffer_string(resp);
  return status;
}

// grpc.health.v1.HealthCheckResponse.ServingStatus
enum class Health { kUnknown = 0, kServing = 1, kNotServing = 2, kServiceUnknown = 3 };

struct HealthResult {
  grpc::Status status;
  Health health = Health::kUnknown;
};

inline HealthResult health_check(const std::shared_ptr<grpc::Channel>& channel,
                                 const std::string& service) {
  HealthResult r;
  std::string response;
  r.status = generic_unary(channel, "/grpc.health.v1.Health/Check", wire_bytes_field(1, service),
                           &response);
  if (r.status.ok()) {
    for (const WireField& f : parse_wire(response)) {
      if (f.number == 1 && f.wire_type == 0) r.health = static_cast<Health>(f.varint);
    }
  }
  return r;
}

// ---- misc ----

// A process's resident set (VmRSS) in kB, -1 when unknown.
inline int64_t rss_kb(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6));
  }
  return -1;
}

// True in a -fsanitize=address or thread build (scripts/sanitizer-check.sh; the server under
// test is built the same way): the sanitizer's quarantine and shadow memory keep freed memory
// resident, so the tests print RSS there without holding it to their bars.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr bool kSanitizedBuild = true;
#else
inline constexpr bool kSanitizedBuild = false;
#endif

// FLAMINGO_E2E_VERBOSE=1 prints the servers' logs also when a test passes.
inline bool verbose() { return std::getenv("FLAMINGO_E2E_VERBOSE") != nullptr; }

// True when `s` is valid UTF-8 (no overlongs, surrogates or code points above U+10FFFF).
inline bool valid_utf8(const std::string& s) {
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    const uint8_t c = static_cast<uint8_t>(s[i]);
    int len = 0;
    uint32_t min = 0;
    uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      len = 2, min = 0x80, cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3, min = 0x800, cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4, min = 0x10000, cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > n) return false;
    for (int k = 1; k < len; ++k) {
      const uint8_t cc = static_cast<uint8_t>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

// GET http://127.0.0.1:port/path over a plain socket (HTTP/1.0, the whole response until EOF).
// Returns the status code and fills `body`; -1 when the connection failed.
inline int http_get(int port, const std::string& path, std::string* body) {
  try {
    const HttpResponse r = http_raw(
        port, "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", 5);
    *body = r.body;
    return r.status;
  } catch (const std::exception&) {
    return -1;
  }
}

// A test on the shared default server: a stub to it, and its log when the test fails.
class DefaultServerTest : public ::testing::Test {
 protected:
  void SetUp() override { stub_ = make_stub(default_server().address()); }
  void TearDown() override {
    if (HasFailure() || verbose()) {
      std::cerr << "server log: " << default_server().describe(3000) << "\n";
    }
  }
  std::unique_ptr<v1::Flamingo::Stub> stub_;
};

}  // namespace flamingo::e2e
