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

namespace flamingo {
namespace {

// ---- a minimal, independent parser of the Prometheus text format 0.0.4 ----

struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;  // unescaped values
  std::string value;                          // as written
};

struct Exposition {
  std::map<std::string, std::string> help;  // unescaped
  std::map<std::string, std::string> type;
  std::vector<Sample> samples;
  std::vector<std::string> family_order;  // families in the order of their TYPE lines

  // The sample with exactly these labels; fails the test when absent.
  const Sample* find(const std::string& name,
                     const std::map<std::string, std::string>& labels) const {
    for (const Sample& s : samples) {
      if (s.name == name && s.labels == labels) return &s;
    }
    return nullptr;
  }
  double value(const std::string& name,
               const std::map<std::string, std::string>& labels = {}) const {
    const Sample* s = find(name, labels);
    EXPECT_NE(s, nullptr) << "no sample " << name;
    if (s == nullptr) return NAN;
    if (s->value == "+Inf") return INFINITY;
    if (s->value == "-Inf") return -INFINITY;
    if (s->value == "NaN") return NAN;
    char* end = nullptr;
    const double v = std::strtod(s->value.c_str(), &end);
    EXPECT_EQ(*end, '\0') << "bad number " << s->value;
    return v;
  }
};

std::string unescape(const std::string& s, bool allow_quote) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\') {
      out += s[i];
      continue;
    }
    EXPECT_LT(i + 1, s.size()) << "dangling backslash in " << s;
    if (i + 1 >= s.size()) break;
    const char c = s[++i];
    if (c == '\\') {
      out += '\\';
    } else if (c == 'n') {
      out += '\n';
    } else if (c == '"' && allow_quote) {
      out += '"';
    } else {
      ADD_FAILURE() << "bad escape \\" << c << " in " << s;
    }
  }
  return out;
}

bool valid_name(const std::string& n) {
  if (n.empty()) return false;
  for (size_t i = 0; i < n.size(); ++i) {
    const char c = n[i];
    if (!(std::isalpha(static_cast<unsigned char>(c)) || c == '_' || c == ':' ||
          (i > 0 && std::isdigit(static_cast<unsigned char>(c))))) {
      return false;
    }
  }
  return true;
}

// The family a sample belongs to: histograms own name_bucket/_sum/_count.
std::string family_of(const Exposition& e, const std::string& sample_name) {
  if (e.type.count(sample_name)) return sample_name;
  for (const char* suffix : {"_bucket", "_sum", "_count"}) {
    const std::string sfx = suffix;
    if (sample_name.size() > sfx.size() &&
        sample_name.compare(sample_name.size() - sfx.size(), sfx.size(), sfx) == 0) {
      const std::string base = sample_name.substr(0, sample_name.size() - sfx.size());
      auto it = e.type.find(base);
      if (it != e.type.end() && it->second == "histogram") return base;
    }
  }
  return "";
}

Exposition parse(const std::string& text) {
  Exposition e;
  EXPECT_TRUE(text.empty() || text.back() == '\n') << "text must end with a newline";
  std::istringstream in(text);
  std::string line;
  std::string current_family;
  std::set<std::string> finished_families;
  while (std::getline(in, line)) {
    EXPECT_FALSE(line.empty()) << "empty line";
    if (line.empty()) continue;
    if (line.rfind("# HELP ", 0) == 0) {
      const std::string rest = line.substr(7);
      const size_t sp = rest.find(' ');
      EXPECT_NE(sp, std::string::npos) << line;
      const std::string name = rest.substr(0, sp);
      EXPECT_TRUE(valid_name(name)) << line;
      EXPECT_EQ(e.help.count(name), 0u) << "HELP twice: " << line;
      e.help[name] = unescape(rest.substr(sp + 1), /*allow_quote=*/false);
      continue;
    }
    if (line.rfind("# TYPE ", 0) == 0) {
      std::istringstream fields(line.substr(7));
      std::string name, type, extra;
      fields >> name >> type;
      EXPECT_FALSE(fields >> extra) << line;
      EXPECT_TRUE(valid_name(name)) << line;
      EXPECT_TRUE(type == "counter" || type == "gauge" || type == "histogram") << line;
      EXPECT_EQ(e.type.count(name), 0u) << "TYPE twice: " << line;
      EXPECT_EQ(e.help.count(name), 1u) << "HELP must precede TYPE: " << line;
      e.type[name] = type;
      e.family_order.push_back(name);
      continue;
    }
    EXPECT_NE(line[0], '#') << "unexpected comment " << line;
    Sample s;
    size_t i = 0;
    while (i < line.size() && line[i] != '{' && line[i] != ' ') ++i;
    s.name = line.substr(0, i);
    EXPECT_TRUE(valid_name(s.name)) << line;
    if (i < line.size() && line[i] == '{') {
      ++i;
      while (i < line.size() && line[i] != '}') {
        const size_t eq = line.find('=', i);
        EXPECT_NE(eq, std::string::npos) << line;
        if (eq == std::string::npos) return e;
        const std::string label = line.substr(i, eq - i);
        EXPECT_TRUE(valid_name(label)) << line;
        EXPECT_EQ(line[eq + 1], '"') << line;
        size_t j = eq + 2;
        std::string raw;
        while (j < line.size() && line[j] != '"') {
          if (line[j] == '\\' && j + 1 < line.size()) raw += line[j++];
          raw += line[j++];
        }
        EXPECT_LT(j, line.size()) << "unterminated label value: " << line;
        EXPECT_EQ(s.labels.count(label), 0u) << line;
        s.labels[label] = unescape(raw, /*allow_quote=*/true);
        i = j + 1;
        if (i < line.size() && line[i] == ',') ++i;
      }
      EXPECT_LT(i, line.size()) << line;
      ++i;  // '}'
    }
    EXPECT_LT(i, line.size()) << line;
    EXPECT_EQ(line[i], ' ') << line;
    s.value = line.substr(i + 1);
    EXPECT_EQ(s.value.find(' '), std::string::npos) << "no timestamps expected: " << line;
    // Every sample belongs to a declared family, and a family's samples are contiguous.
    const std::string family = family_of(e, s.name);
    EXPECT_FALSE(family.empty()) << "sample without TYPE: " << line;
    if (family != current_family) {
      EXPECT_EQ(finished_families.count(family), 0u) << "family split: " << line;
      if (!current_family.empty()) finished_families.insert(current_family);
      current_family = family;
    }
    e.samples.push_back(std::move(s));
  }
  return e;
}

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

// ---- ServerMetrics ----

TEST(ServerMetricsTest, ExportsExactlyTheDocumentedFamilies) {
  ServerMetrics m;
  const Exposition e = parse(m.render());
  const std::map<std::string, std::string> expected = {
      {"flamingo_requests_total", "counter"},
      {"flamingo_queue_length", "gauge"},
      {"flamingo_running_requests", "gauge"},
      {"flamingo_kv_blocks_used", "gauge"},
      {"flamingo_kv_blocks_free", "gauge"},
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
  EXPECT_EQ(series, 56);  // (6 gRPC + 2 HTTP rpcs) x 7 outcomes
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
  });
  Exposition e = parse(m.render());
  EXPECT_EQ(calls, 1);
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
