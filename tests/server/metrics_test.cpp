// Tests of what server/metrics.{h,cpp} keeps over prometheus-cpp: ServerMetrics's series from
// the start, values after recording, cumulative histogram buckets, label escaping and order,
// the collector running before each render, and concurrent updates while rendering. The
// documented families and the outcome map: server_metrics_test.cpp.
#include "server/metrics.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <map>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "model/error.h"
#include "tests/server/prometheus_text.h"

namespace flamingo {
namespace {

using namespace metrics_testing;

const std::vector<std::pair<std::string, const std::vector<double>*>>& histograms() {
  static const std::vector<std::pair<std::string, const std::vector<double>*>> kHistograms = {
      {"flamingo_time_to_first_token_seconds", &ServerMetrics::ttft_buckets()},
      {"flamingo_inter_token_latency_seconds", &ServerMetrics::inter_token_buckets()},
      {"flamingo_request_duration_seconds", &ServerMetrics::request_duration_buckets()},
  };
  return kHistograms;
}

// A bound as the exposition writes it in `le` (the shortest form for these bounds).
std::string le(double bound) {
  std::string s = std::to_string(bound);
  s.erase(s.find_last_not_of('0') + 1);
  if (s.back() == '.') s.pop_back();
  return s;
}

// The `le` values of one histogram's buckets, in order, and their counts.
std::vector<std::pair<std::string, double>> buckets(const Exposition& e, const std::string& name) {
  std::vector<std::pair<std::string, double>> out;
  for (const Sample& s : e.samples) {
    if (s.name != name + "_bucket") continue;
    EXPECT_EQ(s.labels.size(), 1u) << name;
    out.emplace_back(s.labels.at("le"), std::strtod(s.value.c_str(), nullptr));
  }
  return out;
}

// Buckets in bound order, cumulative, ending with +Inf == _count.
void expect_consistent_histogram(const Exposition& e, const std::string& name,
                                 const std::vector<double>& bounds) {
  const auto b = buckets(e, name);
  ASSERT_EQ(b.size(), bounds.size() + 1) << name;
  for (size_t i = 0; i < bounds.size(); ++i) EXPECT_EQ(b[i].first, le(bounds[i])) << name;
  EXPECT_EQ(b.back().first, "+Inf") << name;
  for (size_t i = 1; i < b.size(); ++i) EXPECT_LE(b[i - 1].second, b[i].second) << name;
  EXPECT_EQ(b.back().second, e.value(name + "_count")) << name;
}

TEST(ServerMetricsExpositionTest, EverySeriesIsPresentFromTheStart) {
  ServerMetrics m;
  const std::string text = m.render();
  const Exposition e = parse(text);
  EXPECT_EQ(e.type.size(), 13u);
  for (const auto& [name, type] : e.type) EXPECT_FALSE(e.help.at(name).empty()) << name;

  // (6 gRPC + 2 HTTP rpcs) x 8 outcomes, each with exactly the labels rpc, outcome, api, at 0.
  int series = 0;
  for (const Sample& s : e.samples) {
    if (s.name != "flamingo_requests_total") continue;
    ++series;
    EXPECT_EQ(s.labels.size(), 3u);
    EXPECT_EQ(s.value, "0");
  }
  EXPECT_EQ(series, 64);
  for (const std::string_view outcome : ServerMetrics::kOutcomes) {
    for (const std::string_view rpc : ServerMetrics::kRpcs) {
      EXPECT_EQ(
          e.value("flamingo_requests_total",
                  {{"rpc", std::string(rpc)}, {"outcome", std::string(outcome)}, {"api", "grpc"}}),
          0);
    }
    for (const std::string_view rpc : ServerMetrics::kHttpRpcs) {
      EXPECT_EQ(e.value("flamingo_requests_total", {{"rpc", std::string(rpc)},
                                                    {"outcome", std::string(outcome)},
                                                    {"api", "openai"}}),
                0);
    }
  }
  for (const char* name :
       {"flamingo_queue_length", "flamingo_running_requests", "flamingo_kv_blocks_used",
        "flamingo_kv_blocks_free", "flamingo_image_cache_bytes",
        "flamingo_image_cache_referenced_bytes", "flamingo_prompt_tokens_total",
        "flamingo_generated_tokens_total", "flamingo_images_total"}) {
    EXPECT_EQ(e.value(name), 0) << name;
  }
  for (const auto& [name, bounds] : histograms()) {
    expect_consistent_histogram(e, name, *bounds);
    EXPECT_EQ(e.value(name + "_count"), 0) << name;
    EXPECT_EQ(e.value(name + "_sum"), 0) << name;
  }
  // The documented bounds, exactly.
  EXPECT_EQ(ServerMetrics::ttft_buckets(),
            (std::vector<double>{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                                 20.0, 30.0, 60.0}));
  EXPECT_EQ(ServerMetrics::inter_token_buckets(),
            (std::vector<double>{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25,
                                 0.5, 1.0, 2.5, 10.0}));
  EXPECT_EQ(ServerMetrics::request_duration_buckets(),
            (std::vector<double>{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                                 30.0, 60.0, 120.0, 300.0}));
  // Exact text that dashboards and the e2e tests match: HELP, TYPE, labels in documented order.
  EXPECT_NE(text.find("# HELP flamingo_requests_total Finished requests by method, outcome and "
                      "API.\n# TYPE flamingo_requests_total counter\n"),
            std::string::npos)
      << text;
  EXPECT_NE(
      text.find("\nflamingo_requests_total{rpc=\"Generate\",outcome=\"ok\",api=\"grpc\"} 0\n"),
      std::string::npos)
      << text;
  EXPECT_NE(text.find("\nflamingo_time_to_first_token_seconds_bucket{le=\"+Inf\"} 0\n"),
            std::string::npos)
      << text;
}

TEST(ServerMetricsExpositionTest, RequestSeriesAreSortedByRpcOutcomeApi) {
  ServerMetrics m;
  m.record_request("zeta", "ok", "other");   // byte order: after every known rpc
  m.record_request("Alpha", "ok", "other");  // before every known rpc
  const Exposition e = parse(m.render());
  std::vector<std::vector<std::string>> keys;
  for (const Sample& s : e.samples) {
    if (s.name == "flamingo_requests_total") {
      keys.push_back({s.labels.at("rpc"), s.labels.at("outcome"), s.labels.at("api")});
    }
  }
  ASSERT_EQ(keys.size(), 66u);
  EXPECT_TRUE(std::is_sorted(keys.begin(), keys.end()));
  EXPECT_EQ(keys.front(), (std::vector<std::string>{"Alpha", "ok", "other"}));
  EXPECT_EQ(keys.back(), (std::vector<std::string>{"zeta", "ok", "other"}));
}

TEST(ServerMetricsExpositionTest, ValuesAfterRecording) {
  ServerMetrics m;
  m.record_request("Caption", "ok");
  m.record_request("Caption", "ok");
  m.record_request("completions", "unauthenticated", "openai");
  m.record_request("Generate", "weird");            // unknown outcome: a new series
  m.record_request("Generate", "ok", "websocket");  // unknown api: a new series
  m.add_prompt_tokens(100);
  m.add_prompt_tokens(28);
  m.add_generated_tokens(2.5);
  m.add_images(4);
  // Counters never go down and ignore non-finite amounts.
  m.add_prompt_tokens(-5);
  m.add_prompt_tokens(std::numeric_limits<double>::quiet_NaN());
  m.add_generated_tokens(std::numeric_limits<double>::infinity());
  m.add_images(-std::numeric_limits<double>::infinity());
  // Gauges move both ways.
  m.set_queue_length(7);
  m.set_queue_length(3);
  m.set_running_requests(2);
  m.set_kv_blocks_used(1536);
  m.set_kv_blocks_free(512);
  m.set_image_cache_bytes(3.0 * (1 << 30));
  m.set_image_cache_referenced_bytes(0.5);

  const std::string text = m.render();
  const Exposition e = parse(text);
  EXPECT_EQ(
      e.value("flamingo_requests_total", {{"rpc", "Caption"}, {"outcome", "ok"}, {"api", "grpc"}}),
      2);
  EXPECT_EQ(e.value("flamingo_requests_total",
                    {{"rpc", "completions"}, {"outcome", "unauthenticated"}, {"api", "openai"}}),
            1);
  EXPECT_EQ(e.value("flamingo_requests_total",
                    {{"rpc", "Generate"}, {"outcome", "weird"}, {"api", "grpc"}}),
            1);
  EXPECT_EQ(e.value("flamingo_requests_total",
                    {{"rpc", "Generate"}, {"outcome", "ok"}, {"api", "websocket"}}),
            1);
  EXPECT_EQ(
      e.value("flamingo_requests_total", {{"rpc", "Generate"}, {"outcome", "ok"}, {"api", "grpc"}}),
      0);
  EXPECT_EQ(m.requests("Caption", "ok"), 2);
  EXPECT_EQ(m.requests("Generate", "ok", "websocket"), 1);
  EXPECT_EQ(m.requests("Never", "seen"), 0);
  EXPECT_EQ(e.value("flamingo_prompt_tokens_total"), 128);
  EXPECT_EQ(e.value("flamingo_generated_tokens_total"), 2.5);
  EXPECT_EQ(e.value("flamingo_images_total"), 4);
  EXPECT_EQ(e.value("flamingo_queue_length"), 3);
  EXPECT_EQ(e.value("flamingo_running_requests"), 2);
  EXPECT_EQ(e.value("flamingo_kv_blocks_used"), 1536);
  EXPECT_EQ(e.value("flamingo_kv_blocks_free"), 512);
  EXPECT_EQ(e.value("flamingo_image_cache_bytes"), 3.0 * (1 << 30));
  EXPECT_EQ(e.value("flamingo_image_cache_referenced_bytes"), 0.5);
  // Integral values are written without a fraction or an exponent.
  EXPECT_NE(text.find("\nflamingo_image_cache_bytes 3221225472\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\nflamingo_prompt_tokens_total 128\n"), std::string::npos) << text;
}

TEST(ServerMetricsExpositionTest, HistogramBucketsAreCumulative) {
  ServerMetrics m;
  // `le` is inclusive: a value on a bound counts in that bound's bucket.
  for (const double v : {0.005, 0.005, 0.0051, 0.25, 59.0, 60.0, 61.0, 1000.0}) m.observe_ttft(v);
  m.observe_ttft(std::numeric_limits<double>::quiet_NaN());  // ignored
  m.observe_inter_token_latency(0.0);
  m.observe_inter_token_latency(-1.0);  // below every bound: the first bucket
  m.observe_request_duration(301.0);

  const Exposition e = parse(m.render());
  for (const auto& [name, bounds] : histograms()) expect_consistent_histogram(e, name, *bounds);
  const std::string ttft = "flamingo_time_to_first_token_seconds";
  EXPECT_EQ(e.value(ttft + "_bucket", {{"le", "0.005"}}), 2);
  EXPECT_EQ(e.value(ttft + "_bucket", {{"le", "0.01"}}), 3);
  EXPECT_EQ(e.value(ttft + "_bucket", {{"le", "0.1"}}), 3);
  EXPECT_EQ(e.value(ttft + "_bucket", {{"le", "0.25"}}), 4);
  EXPECT_EQ(e.value(ttft + "_bucket", {{"le", "30"}}), 4);
  EXPECT_EQ(e.value(ttft + "_bucket", {{"le", "60"}}), 6);
  EXPECT_EQ(e.value(ttft + "_bucket", {{"le", "+Inf"}}), 8);
  EXPECT_EQ(e.value(ttft + "_count"), 8);
  // prometheus-cpp writes 16 significant digits (not always the shortest round trip).
  EXPECT_NEAR(e.value(ttft + "_sum"), 1180.2651, 1e-9);
  const std::string itl = "flamingo_inter_token_latency_seconds";
  EXPECT_EQ(e.value(itl + "_bucket", {{"le", "0.001"}}), 2);
  EXPECT_EQ(e.value(itl + "_count"), 2);
  EXPECT_EQ(e.value(itl + "_sum"), -1);
  const std::string dur = "flamingo_request_duration_seconds";
  EXPECT_EQ(e.value(dur + "_bucket", {{"le", "300"}}), 0);
  EXPECT_EQ(e.value(dur + "_bucket", {{"le", "+Inf"}}), 1);
  EXPECT_EQ(e.value(dur + "_count"), 1);
}

TEST(ServerMetricsExpositionTest, LabelValuesAreEscaped) {
  ServerMetrics m;
  const std::string nasty = "a\"b\\c\nd e,f=g}";
  m.record_request(nasty, "ok");
  m.record_request("Caption", nasty, "openai");
  const std::string text = m.render();
  const Exposition e = parse(text);  // checks every line: one sample per line, valid escapes
  EXPECT_EQ(
      e.value("flamingo_requests_total", {{"rpc", nasty}, {"outcome", "ok"}, {"api", "grpc"}}), 1);
  EXPECT_EQ(e.value("flamingo_requests_total",
                    {{"rpc", "Caption"}, {"outcome", nasty}, {"api", "openai"}}),
            1);
  EXPECT_NE(text.find("flamingo_requests_total{rpc=\"a\\\"b\\\\c\\nd e,f=g}\",outcome=\"ok\","
                      "api=\"grpc\"} 1\n"),
            std::string::npos)
      << text;
}

TEST(ServerMetricsExpositionTest, CollectorRunsBeforeEachRender) {
  ServerMetrics m;
  std::atomic<int> calls{0};
  m.set_collector([&calls](ServerMetrics& s) {
    const int n = ++calls;
    s.set_queue_length(n);
    s.set_kv_blocks_free(1000 - n);
    s.record_request("GetModelInfo", "ok");  // the collector may record anything
  });
  for (int i = 1; i <= 3; ++i) {
    const Exposition e = parse(m.render());
    EXPECT_EQ(calls.load(), i);
    EXPECT_EQ(e.value("flamingo_queue_length"), i);  // this scrape's value, not the last one's
    EXPECT_EQ(e.value("flamingo_kv_blocks_free"), 1000 - i);
    EXPECT_EQ(e.value("flamingo_requests_total",
                      {{"rpc", "GetModelInfo"}, {"outcome", "ok"}, {"api", "grpc"}}),
              i);
  }

  // A failing collector fails the render; the next one works again.
  m.set_collector([](ServerMetrics&) { throw Error("stats unavailable"); });
  EXPECT_THROW(m.render(), Error);
  m.set_collector([](ServerMetrics& s) { s.set_running_requests(5); });
  EXPECT_EQ(parse(m.render()).value("flamingo_running_requests"), 5);
  m.set_collector({});
  m.set_running_requests(6);
  EXPECT_EQ(parse(m.render()).value("flamingo_running_requests"), 6);
}

TEST(ServerMetricsExpositionTest, RendersRunOneAtATime) {
  ServerMetrics m;
  std::atomic<int> inside{0};
  std::atomic<int> overlaps{0};
  m.set_collector([&](ServerMetrics&) {
    if (++inside > 1) ++overlaps;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    --inside;
  });
  std::vector<std::thread> scrapers;
  for (int t = 0; t < 3; ++t) {
    scrapers.emplace_back([&m] {
      for (int i = 0; i < 10; ++i) m.render();
    });
  }
  for (auto& th : scrapers) th.join();
  EXPECT_EQ(overlaps.load(), 0);
}

TEST(ServerMetricsExpositionTest, ConcurrentUpdatesWhileRendering) {
  ServerMetrics m;
  constexpr int kThreads = 4;
  constexpr int kPerThread = 20000;
  std::atomic<bool> done{false};
  std::vector<std::thread> writers;
  for (int t = 0; t < kThreads; ++t) {
    writers.emplace_back([&m, t] {
      for (int i = 0; i < kPerThread; ++i) {
        m.record_request(ServerMetrics::kRpcs[t % 2], "ok");
        m.record_request("chat.completions", "ok", "openai");
        m.record_request("Thread" + std::to_string(t), "ok");  // the family's locked path
        m.add_generated_tokens(1);
        m.set_running_requests(i);
        m.observe_inter_token_latency(0.001 * (i % 50));
        m.observe_request_duration(i % 7);
      }
    });
  }
  int scrapes = 0;
  std::thread scraper([&] {
    double last_tokens = 0;
    while (!done.load()) {
      const Exposition e = parse(m.render());
      for (const auto& [name, bounds] : histograms()) expect_consistent_histogram(e, name, *bounds);
      const double tokens = e.value("flamingo_generated_tokens_total");
      EXPECT_GE(tokens, last_tokens);  // counters never go back
      last_tokens = tokens;
      ++scrapes;
    }
  });
  for (auto& th : writers) th.join();
  done = true;
  scraper.join();
  EXPECT_GT(scrapes, 0);

  const Exposition e = parse(m.render());
  EXPECT_EQ(
      e.value("flamingo_requests_total", {{"rpc", "Generate"}, {"outcome", "ok"}, {"api", "grpc"}}),
      kThreads / 2 * kPerThread);
  EXPECT_EQ(e.value("flamingo_requests_total",
                    {{"rpc", "GenerateStream"}, {"outcome", "ok"}, {"api", "grpc"}}),
            kThreads / 2 * kPerThread);
  EXPECT_EQ(e.value("flamingo_requests_total",
                    {{"rpc", "chat.completions"}, {"outcome", "ok"}, {"api", "openai"}}),
            kThreads * kPerThread);
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(e.value("flamingo_requests_total",
                      {{"rpc", "Thread" + std::to_string(t)}, {"outcome", "ok"}, {"api", "grpc"}}),
              kPerThread);
  }
  EXPECT_EQ(e.value("flamingo_generated_tokens_total"), kThreads * kPerThread);
  EXPECT_EQ(e.value("flamingo_inter_token_latency_seconds_count"), kThreads * kPerThread);
  EXPECT_EQ(e.value("flamingo_request_duration_seconds_count"), kThreads * kPerThread);
  for (const auto& [name, bounds] : histograms()) expect_consistent_histogram(e, name, *bounds);
}

}  // namespace
}  // namespace flamingo
