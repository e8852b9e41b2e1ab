// Tests of server/metrics.h's registry: the Prometheus text format (HELP/TYPE lines, escaping,
// values, cumulative histogram buckets), registration errors, and concurrent updates and
// renders. ServerMetrics itself: server_metrics_test.cpp.
#include "server/metrics.h"

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
#include "tests/server/prometheus_text.h"

namespace flamingo {
namespace {

using namespace metrics_testing;

// ---- registry and text format ----

TEST(MetricsFormatTest, HelpTypeAndSampleLines) {
  MetricsRegistry reg;
  Counter& c = reg.counter("test_events_total", "Events seen.");
  Gauge& g = reg.gauge("test_temperature", "A gauge.");
  CounterFamily& f = reg.counter_family("test_by_kind_total", "By kind.", {"kind", "zone"});
  c.inc();
  c.inc(2.5);
  g.set(-3.25);
  f.with({"a", "x"}).inc(4);
  f.with({"b", "y"}).inc();
  f.with({"a", "x"}).inc();

  const std::string text = reg.render();
  const Exposition e = parse(text);
  EXPECT_EQ(e.family_order, (std::vector<std::string>{"test_events_total", "test_temperature",
                                                      "test_by_kind_total"}));
  EXPECT_EQ(e.type.at("test_events_total"), "counter");
  EXPECT_EQ(e.type.at("test_temperature"), "gauge");
  EXPECT_EQ(e.type.at("test_by_kind_total"), "counter");
  EXPECT_EQ(e.help.at("test_events_total"), "Events seen.");
  EXPECT_DOUBLE_EQ(e.value("test_events_total"), 3.5);
  EXPECT_DOUBLE_EQ(e.value("test_temperature"), -3.25);
  EXPECT_DOUBLE_EQ(e.value("test_by_kind_total", {{"kind", "a"}, {"zone", "x"}}), 5);
  EXPECT_DOUBLE_EQ(e.value("test_by_kind_total", {{"kind", "b"}, {"zone", "y"}}), 1);
  EXPECT_EQ(e.samples.size(), 4u);
  // Exact lines for the simplest cases (format is fixed by the spec, not by us).
  EXPECT_NE(text.find("# HELP test_events_total Events seen.\n# TYPE test_events_total counter\n"
                      "test_events_total 3.5\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("test_by_kind_total{kind=\"a\",zone=\"x\"} 5\n"), std::string::npos) << text;
}

TEST(MetricsFormatTest, LabelValuesAreEscaped) {
  MetricsRegistry reg;
  CounterFamily& f = reg.counter_family("test_escape_total", "Escaping.", {"v"});
  const std::string nasty = "a\"b\\c\nd}e,f=g";
  f.with({nasty}).inc();
  const std::string text = reg.render();
  // The raw line: quote -> \", backslash -> \\, newline -> \n; nothing else touched.
  EXPECT_NE(text.find("test_escape_total{v=\"a\\\"b\\\\c\\nd}e,f=g\"} 1\n"), std::string::npos)
      << text;
  const Exposition e = parse(text);
  ASSERT_EQ(e.samples.size(), 1u);
  EXPECT_EQ(e.samples[0].labels.at("v"), nasty);

  EXPECT_EQ(escape_label_value("plain"), "plain");
  EXPECT_EQ(escape_label_value("\\"), "\\\\");
  EXPECT_EQ(escape_label_value("\""), "\\\"");
  EXPECT_EQ(escape_label_value("\n"), "\\n");
}

TEST(MetricsFormatTest, HelpIsEscapedOntoOneLine) {
  MetricsRegistry reg;
  reg.gauge("test_help", "line one\nline two with \\ and \"quotes\"");
  const std::string text = reg.render();
  EXPECT_NE(text.find("# HELP test_help line one\\nline two with \\\\ and \"quotes\"\n"),
            std::string::npos)
      << text;
  const Exposition e = parse(text);
  EXPECT_EQ(e.help.at("test_help"), "line one\nline two with \\ and \"quotes\"");
}

TEST(MetricsFormatTest, ValueFormatting) {
  EXPECT_EQ(format_metric_value(0), "0");
  EXPECT_EQ(format_metric_value(1), "1");
  EXPECT_EQ(format_metric_value(42), "42");
  EXPECT_EQ(format_metric_value(0.005), "0.005");
  EXPECT_EQ(format_metric_value(-2.5), "-2.5");
  EXPECT_EQ(format_metric_value(INFINITY), "+Inf");
  EXPECT_EQ(format_metric_value(-INFINITY), "-Inf");
  EXPECT_EQ(format_metric_value(NAN), "NaN");
  // Large integers stay exact (round-trip).
  EXPECT_EQ(std::strtod(format_metric_value(9007199254740992.0).c_str(), nullptr),
            9007199254740992.0);
  EXPECT_EQ(std::strtod(format_metric_value(0.1 + 0.2).c_str(), nullptr), 0.1 + 0.2);
}

TEST(MetricsFormatTest, HistogramBucketsAreCumulative) {
  MetricsRegistry reg;
  Histogram& h = reg.histogram("test_latency_seconds", "Latency.", {1.0, 2.0, 5.0});
  for (double v : {0.5, 1.0, 1.5, 3.0, 10.0, 100.0, -1.0}) h.observe(v);
  h.observe(NAN);  // ignored
  const Exposition e = parse(reg.render());
  EXPECT_EQ(e.type.at("test_latency_seconds"), "histogram");
  // le is inclusive: 1.0 lands in le="1"; -1 too.
  EXPECT_EQ(e.value("test_latency_seconds_bucket", {{"le", "1"}}), 3);
  EXPECT_EQ(e.value("test_latency_seconds_bucket", {{"le", "2"}}), 4);
  EXPECT_EQ(e.value("test_latency_seconds_bucket", {{"le", "5"}}), 5);
  EXPECT_EQ(e.value("test_latency_seconds_bucket", {{"le", "+Inf"}}), 7);
  EXPECT_EQ(e.value("test_latency_seconds_count"), 7);
  EXPECT_DOUBLE_EQ(e.value("test_latency_seconds_sum"), 0.5 + 1 + 1.5 + 3 + 10 + 100 - 1);
  // Order: buckets ascending, +Inf last, then _sum and _count.
  std::vector<std::string> order;
  for (const Sample& s : e.samples) {
    order.push_back(s.name + (s.labels.count("le") ? "/" + s.labels.at("le") : ""));
  }
  EXPECT_EQ(order, (std::vector<std::string>{
                       "test_latency_seconds_bucket/1", "test_latency_seconds_bucket/2",
                       "test_latency_seconds_bucket/5", "test_latency_seconds_bucket/+Inf",
                       "test_latency_seconds_sum", "test_latency_seconds_count"}));

  const Histogram::Snapshot s = h.snapshot();
  EXPECT_EQ(s.cumulative, (std::vector<uint64_t>{3, 4, 5, 7}));
  EXPECT_EQ(s.count, 7u);
}

TEST(MetricsFormatTest, EmptyHistogramAndLabelledHistogram) {
  MetricsRegistry reg;
  reg.histogram("test_empty_seconds", "Nothing yet.", {0.1});
  HistogramFamily& f = reg.histogram_family("test_by_rpc_seconds", "By rpc.", {"rpc"}, {0.5});
  f.with({"Score"}).observe(0.25);
  f.with({"Score"}).observe(0.75);
  const Exposition e = parse(reg.render());
  EXPECT_EQ(e.value("test_empty_seconds_bucket", {{"le", "0.1"}}), 0);
  EXPECT_EQ(e.value("test_empty_seconds_bucket", {{"le", "+Inf"}}), 0);
  EXPECT_EQ(e.value("test_empty_seconds_sum"), 0);
  EXPECT_EQ(e.value("test_empty_seconds_count"), 0);
  EXPECT_EQ(e.value("test_by_rpc_seconds_bucket", {{"rpc", "Score"}, {"le", "0.5"}}), 1);
  EXPECT_EQ(e.value("test_by_rpc_seconds_bucket", {{"rpc", "Score"}, {"le", "+Inf"}}), 2);
  EXPECT_EQ(e.value("test_by_rpc_seconds_count", {{"rpc", "Score"}}), 2);
  EXPECT_DOUBLE_EQ(e.value("test_by_rpc_seconds_sum", {{"rpc", "Score"}}), 1.0);
}

TEST(MetricsFormatTest, LabelledFamilyWithoutChildrenRendersOnlyHeader) {
  MetricsRegistry reg;
  reg.counter_family("test_none_total", "None yet.", {"x"});
  const std::string text = reg.render();
  EXPECT_EQ(text, "# HELP test_none_total None yet.\n# TYPE test_none_total counter\n");
}

TEST(MetricsFormatTest, CountersIgnoreNegativeAndNonFinite_GaugesMoveBothWays) {
  Counter c;
  c.inc(2);
  c.inc(-1);
  c.inc(NAN);
  c.inc(INFINITY);
  EXPECT_EQ(c.value(), 2);
  Gauge g;
  g.inc(5);
  g.dec(7);
  EXPECT_EQ(g.value(), -2);
  g.set(11);
  EXPECT_EQ(g.value(), 11);
}

TEST(MetricsFormatTest, RegistrationErrors) {
  MetricsRegistry reg;
  reg.counter("test_dup_total", "x");
  EXPECT_THROW(reg.counter("test_dup_total", "again"), Error);
  EXPECT_THROW(reg.gauge("test_dup_total", "other type, same name"), Error);
  EXPECT_THROW(reg.counter("1starts_with_digit", "x"), Error);
  EXPECT_THROW(reg.counter("has-dash", "x"), Error);
  EXPECT_THROW(reg.counter("", "x"), Error);
  EXPECT_THROW(reg.counter_family("test_l1_total", "x", {"__reserved"}), Error);
  EXPECT_THROW(reg.counter_family("test_l2_total", "x", {"a:b"}), Error);
  EXPECT_THROW(reg.counter_family("test_l3_total", "x", {"a", "a"}), Error);
  EXPECT_THROW(reg.histogram_family("test_h1", "x", {"le"}, {1.0}), Error);
  EXPECT_THROW(reg.histogram("test_h2", "x", {1.0, 1.0}), Error);
  EXPECT_THROW(reg.histogram("test_h3", "x", {2.0, 1.0}), Error);
  EXPECT_THROW(reg.histogram("test_h4", "x", {1.0, INFINITY}), Error);
  EXPECT_THROW(reg.histogram("test_h5", "x", {NAN}), Error);
  CounterFamily& f = reg.counter_family("test_two_total", "x", {"a", "b"});
  EXPECT_THROW(f.with({"only one"}), Error);
  EXPECT_THROW(f.with({"1", "2", "3"}), Error);
  // Failed registrations left nothing behind: only the valid families render.
  const Exposition e = parse(reg.render());
  EXPECT_EQ(e.family_order, (std::vector<std::string>{"test_dup_total", "test_two_total"}));
  try {
    reg.histogram("test_h6", "x", {3.0, 2.0});
    FAIL() << "no throw";
  } catch (const Error& err) {
    const std::string msg = err.what();
    EXPECT_NE(msg.find('2'), std::string::npos) << msg;
    EXPECT_NE(msg.find('3'), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

TEST(MetricsConcurrencyTest, CountersFromSeveralThreadsAddUp) {
  MetricsRegistry reg;
  Counter& c = reg.counter("test_threads_total", "x");
  CounterFamily& f = reg.counter_family("test_threads_by_total", "x", {"t"});
  Histogram& h = reg.histogram("test_threads_seconds", "x", {0.5});
  constexpr int kThreads = 4;
  constexpr int kPerThread = 20000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        c.inc();
        f.with({t % 2 == 0 ? "even" : "odd"}).inc(0.5);
        h.observe(i % 2 == 0 ? 0.25 : 1.0);
      }
    });
  }
  for (auto& th : threads) th.join();
  const Exposition e = parse(reg.render());
  EXPECT_EQ(e.value("test_threads_total"), kThreads * kPerThread);
  EXPECT_EQ(e.value("test_threads_by_total", {{"t", "even"}}), kThreads / 2 * kPerThread * 0.5);
  EXPECT_EQ(e.value("test_threads_by_total", {{"t", "odd"}}), kThreads / 2 * kPerThread * 0.5);
  EXPECT_EQ(e.value("test_threads_seconds_count"), kThreads * kPerThread);
  EXPECT_EQ(e.value("test_threads_seconds_bucket", {{"le", "0.5"}}), kThreads * kPerThread / 2);
  EXPECT_DOUBLE_EQ(e.value("test_threads_seconds_sum"), kThreads * (kPerThread / 2) * (0.25 + 1.0));
}

TEST(MetricsConcurrencyTest, RenderDuringUpdatesIsAlwaysConsistent) {
  MetricsRegistry reg;
  Histogram& h = reg.histogram("test_live_seconds", "x", {0.1, 1.0});
  Counter& c = reg.counter("test_live_total", "x");
  std::atomic<bool> done{false};
  std::thread writer([&] {
    for (int i = 0; i < 50000; ++i) {
      h.observe((i % 3) * 0.6);
      c.inc();
    }
    done = true;
  });
  double last_count = 0;
  int renders = 0;
  while (!done || renders < 3) {
    const Exposition e = parse(reg.render());
    const double b1 = e.value("test_live_seconds_bucket", {{"le", "0.1"}});
    const double b2 = e.value("test_live_seconds_bucket", {{"le", "1"}});
    const double inf = e.value("test_live_seconds_bucket", {{"le", "+Inf"}});
    const double count = e.value("test_live_seconds_count");
    ASSERT_LE(b1, b2);
    ASSERT_LE(b2, inf);
    ASSERT_EQ(count, inf);
    ASSERT_GE(count, last_count);  // never goes back
    last_count = count;
    ++renders;
  }
  writer.join();
  EXPECT_EQ(parse(reg.render()).value("test_live_seconds_count"), 50000);
}

}  // namespace
}  // namespace flamingo
