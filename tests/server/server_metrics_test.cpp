// Tests of ServerMetrics (server/metrics.h): the documented families and series, recording
// requests (gRPC and the HTTP API), tokens and latencies, the collector, the status-code
// outcome map, concurrent recording.
#include <gtest/gtest.h>

#include <atomic>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "model/error.h"
#include "server/metrics.h"
#include "tests/server/prometheus_text.h"

namespace flamingo {
namespace {

using namespace metrics_testing;

TEST(ServerMetricsTest, ExportsExactlyTheDocumentedFamilies) {
  ServerMetrics m;
  const Exposition e = parse(m.render());
  const std::map<std::string, std::string> expected = {
      {"flamingo_requests_total", "counter"},
      {"flamingo_queue_length", "gauge"},
      {"flamingo_running_requests", "gauge"},
      {"flamingo_kv_blocks_used", "gauge"},
      {"flamingo_kv_blocks_free", "gauge"},
      {"flamingo_image_cache_bytes", "gauge"},
      {"flamingo_image_cache_referenced_bytes", "gauge"},
      {"flamingo_prompt_tokens_total", "counter"},
      {"flamingo_generated_tokens_total", "counter"},
      {"flamingo_images_total", "counter"},
      {"flamingo_time_to_first_token_seconds", "histogram"},
      {"flamingo_inter_token_latency_seconds", "histogram"},
      {"flamingo_request_duration_seconds", "histogram"},
  };
  EXPECT_EQ(e.type, expected);
  for (const auto& [name, type] : expected) EXPECT_FALSE(e.help.at(name).empty()) << name;

  // Every rpc x outcome series exists from the start, at 0.
  const std::vector<std::string> rpcs = {"Generate",       "GenerateStream", "Caption",
                                         "AnswerQuestion", "Score",          "GetModelInfo"};
  const std::vector<std::string> outcomes = {"ok",        "invalid_argument",  "resource_exhausted",
                                             "cancelled", "deadline_exceeded", "unavailable",
                                             "internal"};
  int series = 0;
  for (const Sample& s : e.samples) series += s.name == "flamingo_requests_total";
  EXPECT_EQ(series, 64);  // (6 gRPC + 2 HTTP rpcs) x 8 outcomes
  for (const char* rpc : {"chat.completions", "completions"}) {
    for (const auto& outcome : outcomes) {
      EXPECT_EQ(e.value("flamingo_requests_total",
                        {{"rpc", rpc}, {"outcome", outcome}, {"api", "openai"}}),
                0)
          << rpc << " " << outcome;
    }
  }
  for (const auto& rpc : rpcs) {
    for (const auto& outcome : outcomes) {
      EXPECT_EQ(
          e.value("flamingo_requests_total", {{"rpc", rpc}, {"outcome", outcome}, {"api", "grpc"}}),
          0)
          << rpc << " " << outcome;
    }
  }
  // Histogram ranges suit an LLM server: from milliseconds to a minute (or more).
  const auto& ttft = ServerMetrics::ttft_buckets();
  EXPECT_LE(ttft.front(), 0.005);
  EXPECT_GE(ttft.back(), 60.0);
  EXPECT_LE(ServerMetrics::inter_token_buckets().front(), 0.005);
  EXPECT_GE(ServerMetrics::request_duration_buckets().back(), 60.0);
  EXPECT_EQ(e.value("flamingo_time_to_first_token_seconds_bucket", {{"le", "+Inf"}}), 0);
  EXPECT_EQ(e.value("flamingo_time_to_first_token_seconds_bucket", {{"le", "60"}}), 0);
  EXPECT_EQ(e.value("flamingo_request_duration_seconds_bucket", {{"le", "0.005"}}), 0);
}

TEST(ServerMetricsTest, RecordsRequestsTokensAndLatencies) {
  ServerMetrics m;
  m.record_request("Generate", "ok");
  m.record_request("Generate", "ok");
  m.record_request("Score", "invalid_argument");
  m.record_request("GenerateStream", outcome_for_status_code(1));  // CANCELLED
  m.record_request("Bogus", "weird");                              // recorded as given
  m.record_request("chat.completions", "ok", "openai");
  m.record_request("chat.completions", "ok", "openai");
  m.add_prompt_tokens(120);
  m.add_prompt_tokens(8);
  m.add_generated_tokens(64);
  m.add_images(3);
  m.observe_ttft(0.2);
  m.observe_ttft(7.0);
  m.observe_inter_token_latency(0.02);
  m.observe_request_duration(1.5);

  const Exposition e = parse(m.render());
  EXPECT_EQ(
      e.value("flamingo_requests_total", {{"rpc", "Generate"}, {"outcome", "ok"}, {"api", "grpc"}}),
      2);
  EXPECT_EQ(e.value("flamingo_requests_total",
                    {{"rpc", "Score"}, {"outcome", "invalid_argument"}, {"api", "grpc"}}),
            1);
  EXPECT_EQ(e.value("flamingo_requests_total",
                    {{"rpc", "GenerateStream"}, {"outcome", "cancelled"}, {"api", "grpc"}}),
            1);
  EXPECT_EQ(
      e.value("flamingo_requests_total", {{"rpc", "Bogus"}, {"outcome", "weird"}, {"api", "grpc"}}),
      1);
  EXPECT_EQ(
      e.value("flamingo_requests_total", {{"rpc", "Caption"}, {"outcome", "ok"}, {"api", "grpc"}}),
      0);
  EXPECT_EQ(m.requests("Generate", "ok"), 2);
  EXPECT_EQ(e.value("flamingo_requests_total",
                    {{"rpc", "chat.completions"}, {"outcome", "ok"}, {"api", "openai"}}),
            2);
  EXPECT_EQ(m.requests("chat.completions", "ok", "openai"), 2);
  EXPECT_EQ(e.value("flamingo_prompt_tokens_total"), 128);
  EXPECT_EQ(e.value("flamingo_generated_tokens_total"), 64);
  EXPECT_EQ(e.value("flamingo_images_total"), 3);
  EXPECT_EQ(e.value("flamingo_time_to_first_token_seconds_count"), 2);
  EXPECT_DOUBLE_EQ(e.value("flamingo_time_to_first_token_seconds_sum"), 7.2);
  EXPECT_EQ(e.value("flamingo_time_to_first_token_seconds_bucket", {{"le", "0.25"}}), 1);
  EXPECT_EQ(e.value("flamingo_time_to_first_token_seconds_bucket", {{"le", "5"}}), 1);
  EXPECT_EQ(e.value("flamingo_time_to_first_token_seconds_bucket", {{"le", "10"}}), 2);
  EXPECT_EQ(e.value("flamingo_inter_token_latency_seconds_bucket", {{"le", "0.01"}}), 0);
  EXPECT_EQ(e.value("flamingo_inter_token_latency_seconds_bucket", {{"le", "0.025"}}), 1);
  EXPECT_EQ(e.value("flamingo_request_duration_seconds_bucket", {{"le", "1"}}), 0);
  EXPECT_EQ(e.value("flamingo_request_duration_seconds_bucket", {{"le", "2.5"}}), 1);
  EXPECT_EQ(e.value("flamingo_request_duration_seconds_count"), 1);
}

TEST(ServerMetricsTest, CollectorFillsGaugesAtEachScrape) {
  ServerMetrics m;
  int calls = 0;
  m.set_collector([&calls](ServerMetrics& s) {
    ++calls;
    s.set_queue_length(calls * 10);
    s.set_running_requests(calls);
    s.set_kv_blocks_used(100 + calls);
    s.set_kv_blocks_free(900 - calls);
    s.set_image_cache_bytes(4096.0 * calls);
    s.set_image_cache_referenced_bytes(1024.0 * calls);
  });
  Exposition e = parse(m.render());
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(e.value("flamingo_image_cache_bytes"), 4096);
  EXPECT_EQ(e.value("flamingo_image_cache_referenced_bytes"), 1024);
  EXPECT_EQ(e.value("flamingo_queue_length"), 10);
  EXPECT_EQ(e.value("flamingo_running_requests"), 1);
  EXPECT_EQ(e.value("flamingo_kv_blocks_used"), 101);
  EXPECT_EQ(e.value("flamingo_kv_blocks_free"), 899);
  e = parse(m.render());
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(e.value("flamingo_queue_length"), 20);
  EXPECT_EQ(e.value("flamingo_kv_blocks_free"), 898);

  m.set_collector(nullptr);  // removed: gauges keep their last values
  e = parse(m.render());
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(e.value("flamingo_queue_length"), 20);

  m.set_collector([](ServerMetrics&) { throw Error("engine stats unavailable"); });
  EXPECT_THROW(m.render(), Error);
}

TEST(ServerMetricsTest, OutcomeForStatusCode) {
  // grpc::StatusCode numbers, from the gRPC spec (doc/statuscodes.md).
  EXPECT_EQ(outcome_for_status_code(0), "ok");
  EXPECT_EQ(outcome_for_status_code(1), "cancelled");
  EXPECT_EQ(outcome_for_status_code(3), "invalid_argument");
  EXPECT_EQ(outcome_for_status_code(4), "deadline_exceeded");
  EXPECT_EQ(outcome_for_status_code(8), "resource_exhausted");
  EXPECT_EQ(outcome_for_status_code(14), "unavailable");
  EXPECT_EQ(outcome_for_status_code(16), "unauthenticated");
  EXPECT_EQ(outcome_for_status_code(13), "internal");
  EXPECT_EQ(outcome_for_status_code(2), "internal");   // UNKNOWN
  EXPECT_EQ(outcome_for_status_code(12), "internal");  // UNIMPLEMENTED
}

TEST(ServerMetricsTest, ConcurrentRecordingAddsUp) {
  ServerMetrics m;
  constexpr int kThreads = 4;
  constexpr int kPerThread = 5000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&m, t] {
      for (int i = 0; i < kPerThread; ++i) {
        m.record_request(ServerMetrics::kRpcs[t % 2], "ok");
        m.add_generated_tokens(1);
        m.observe_inter_token_latency(0.003);
      }
    });
  }
  std::thread scraper([&m] {
    for (int i = 0; i < 20; ++i) parse(m.render());
  });
  for (auto& th : threads) th.join();
  scraper.join();
  const Exposition e = parse(m.render());
  EXPECT_EQ(
      e.value("flamingo_requests_total", {{"rpc", "Generate"}, {"outcome", "ok"}, {"api", "grpc"}}),
      kThreads / 2 * kPerThread);
  EXPECT_EQ(e.value("flamingo_requests_total",
                    {{"rpc", "GenerateStream"}, {"outcome", "ok"}, {"api", "grpc"}}),
            kThreads / 2 * kPerThread);
  EXPECT_EQ(e.value("flamingo_generated_tokens_total"), kThreads * kPerThread);
  EXPECT_EQ(e.value("flamingo_inter_token_latency_seconds_bucket", {{"le", "0.0025"}}), 0);
  EXPECT_EQ(e.value("flamingo_inter_token_latency_seconds_bucket", {{"le", "0.005"}}),
            kThreads * kPerThread);
}

}  // namespace
}  // namespace flamingo
