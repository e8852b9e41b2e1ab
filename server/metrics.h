// Prometheus metrics: a small registry of counters, gauges and fixed-bucket histograms
// (optionally labelled) rendered in the text exposition format 0.0.4, and ServerMetrics, the
// server's own metric set (the names below are a stable contract for dashboards).
//
// Thread-safety: every class here is thread-safe. Updates (Counter::inc, Gauge::set,
// Histogram::observe) are lock-free atomics and may come from any thread (the engine thread,
// gRPC threads); looking up a labelled child takes its family's mutex (ServerMetrics avoids
// that for its known label values); render() may run concurrently with updates (from the
// HTTP thread) and sees each value atomically, a histogram's _count always equal to its +Inf
// bucket. References returned by the registry and by families stay valid as long as the
// registry lives. Torch-free and gRPC-free.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace flamingo {

// A monotonically increasing value. inc() ignores negative, NaN and infinite amounts (a
// counter never goes down; the hot path does not throw).
class Counter {
 public:
  void inc(double amount = 1.0);
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

// A value that goes up and down (set from a collector at scrape time or updated in place).
class Gauge {
 public:
  void set(double value) { value_.store(value, std::memory_order_relaxed); }
  void inc(double amount = 1.0);
  void dec(double amount = 1.0) { inc(-amount); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

// A histogram with fixed upper bounds (`le`, inclusive); +Inf is implicit. observe() ignores
// NaN. Bounds must be finite and strictly increasing (else flamingo::Error).
class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);

  void observe(double value);

  struct Snapshot {
    std::vector<double> upper_bounds;  // without +Inf
    std::vector<uint64_t> cumulative;  // upper_bounds.size() + 1 entries; last is +Inf
    double sum = 0.0;
    uint64_t count = 0;  // == cumulative.back()
  };
  Snapshot snapshot() const;
  const std::vector<double>& upper_bounds() const { return upper_bounds_; }

 private:
  std::vector<double> upper_bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;  // per bucket (not cumulative), + Inf
  std::atomic<double> sum_{0.0};
};

enum class MetricType { kCounter, kGauge, kHistogram };

// A metric family: one name, help text, type and label names; one child per distinct tuple
// of label values. Families without labels have exactly one child (created up front).
class MetricFamilyBase {
 public:
  MetricFamilyBase(std::string name, std::string help, MetricType type,
                   std::vector<std::string> label_names);
  virtual ~MetricFamilyBase() = default;

  const std::string& name() const { return name_; }
  MetricType type() const { return type_; }
  const std::vector<std::string>& label_names() const { return label_names_; }

  // Appends "# HELP", "# TYPE" and one sample line per child (sorted by label values).
  virtual void render(std::string& out) const = 0;

 protected:
  void check_label_count(size_t n) const;
  void render_header(std::string& out) const;

  std::string name_;
  std::string help_;
  MetricType type_;
  std::vector<std::string> label_names_;
};

template <class T>
class MetricFamily final : public MetricFamilyBase {
 public:
  using Factory = std::function<std::unique_ptr<T>()>;
  MetricFamily(std::string name, std::string help, MetricType type,
               std::vector<std::string> label_names, Factory factory);

  // The child for these label values (one per label name, in order), created on first use.
  // flamingo::Error if the number of values differs from the number of label names.
  T& with(std::span<const std::string_view> label_values);
  T& with(std::initializer_list<std::string_view> label_values) {
    return with(std::span<const std::string_view>(label_values.begin(), label_values.size()));
  }

  void render(std::string& out) const override;

 private:
  Factory factory_;
  mutable std::mutex mutex_;
  std::map<std::vector<std::string>, std::unique_ptr<T>> children_;
};

using CounterFamily = MetricFamily<Counter>;
using GaugeFamily = MetricFamily<Gauge>;
using HistogramFamily = MetricFamily<Histogram>;

// Owns metric families and renders them in registration order. Names must match
// [a-zA-Z_:][a-zA-Z0-9_:]*, label names [a-zA-Z_][a-zA-Z0-9_]* (not starting with "__", and
// not "le" for histograms); a name may be registered once. Violations throw flamingo::Error.
class MetricsRegistry {
 public:
  CounterFamily& counter_family(std::string name, std::string help,
                                std::vector<std::string> label_names);
  GaugeFamily& gauge_family(std::string name, std::string help,
                            std::vector<std::string> label_names);
  HistogramFamily& histogram_family(std::string name, std::string help,
                                    std::vector<std::string> label_names,
                                    std::vector<double> upper_bounds);

  // Unlabelled shorthands: the family's single child.
  Counter& counter(std::string name, std::string help);
  Gauge& gauge(std::string name, std::string help);
  Histogram& histogram(std::string name, std::string help, std::vector<double> upper_bounds);

  // The text exposition format 0.0.4 of every family.
  std::string render() const;

 private:
  void add(std::unique_ptr<MetricFamilyBase> family);

  mutable std::mutex mutex_;
  std::vector<std::unique_ptr<MetricFamilyBase>> families_;
};

// Text-format helpers (exposed for tests and for other renderers).
// Label values: backslash -> \\, double quote -> \", newline -> \n.
std::string escape_label_value(std::string_view value);
// HELP text: backslash -> \\, newline -> \n.
std::string escape_help(std::string_view help);
// Shortest round-trip decimal; "+Inf", "-Inf", "NaN" for the special values.
std::string format_metric_value(double value);

// Maps a gRPC status code number (grpc::StatusCode, passed as int to keep this file
// gRPC-free) to a ServerMetrics outcome label: 0 ok, 1 cancelled, 3 invalid_argument,
// 4 deadline_exceeded, 8 resource_exhausted, 14 unavailable, 16 unauthenticated, anything
// else internal.
std::string_view outcome_for_status_code(int code);

// The server's metrics. Names (stable; all unlabelled unless noted):
//   flamingo_requests_total{rpc,outcome,api}  counter: finished requests. api "grpc" with rpc
//                                              one of kRpcs, or api "openai" (the HTTP API)
//                                              with rpc one of kHttpRpcs; outcome one of
//                                              kOutcomes; all (6+2)x8 series are exported from
//                                              the start (as 0).
//   flamingo_queue_length                     gauge: requests waiting for admission.
//   flamingo_running_requests                 gauge: sequences in the running batch.
//   flamingo_kv_blocks_used                   gauge: KV cache blocks in use.
//   flamingo_kv_blocks_free                   gauge: KV cache blocks free.
//   flamingo_image_cache_bytes                gauge: encoded images' K/V held in the image cache.
//   flamingo_image_cache_referenced_bytes     gauge: the part of it that running requests hold
//                                              (0 when idle: anything else is a leak).
//   flamingo_prompt_tokens_total              counter: prompt tokens of admitted requests.
//   flamingo_generated_tokens_total           counter: generated (completion) tokens.
//   flamingo_images_total                     counter: images in admitted requests.
//   flamingo_time_to_first_token_seconds      histogram: arrival -> first generated token.
//   flamingo_inter_token_latency_seconds      histogram: time between consecutive tokens.
//   flamingo_request_duration_seconds         histogram: arrival -> finish, any outcome.
// Gauges are usually filled by the collector, which render() calls first, so they are
// current at every scrape.
class ServerMetrics {
 public:
  static constexpr std::string_view kRpcs[] = {"Generate",       "GenerateStream", "Caption",
                                               "AnswerQuestion", "Score",          "GetModelInfo"};
  static constexpr std::string_view kHttpRpcs[] = {"chat.completions", "completions"};
  static constexpr std::string_view kOutcomes[] = {
      "ok",          "invalid_argument", "resource_exhausted", "cancelled", "deadline_exceeded",
      "unavailable", "internal",         "unauthenticated"};
  // Histogram bounds in seconds.
  static const std::vector<double>& ttft_buckets();              // 0.005 .. 60
  static const std::vector<double>& inter_token_buckets();       // 0.001 .. 10
  static const std::vector<double>& request_duration_buckets();  // 0.005 .. 300

  using Collector = std::function<void(ServerMetrics&)>;

  ServerMetrics();
  ServerMetrics(const ServerMetrics&) = delete;
  ServerMetrics& operator=(const ServerMetrics&) = delete;

  // flamingo_requests_total{rpc, outcome, api} += 1. Known names take a lock-free path; other
  // values are recorded as given (a new series).
  void record_request(std::string_view rpc, std::string_view outcome,
                      std::string_view api = "grpc");
  // The current value of one flamingo_requests_total series (creates it if new).
  double requests(std::string_view rpc, std::string_view outcome, std::string_view api = "grpc");

  void set_queue_length(double n) { queue_length_.set(n); }
  void set_running_requests(double n) { running_requests_.set(n); }
  void set_kv_blocks_used(double n) { kv_blocks_used_.set(n); }
  void set_kv_blocks_free(double n) { kv_blocks_free_.set(n); }
  void set_image_cache_bytes(double n) { image_cache_bytes_.set(n); }
  void set_image_cache_referenced_bytes(double n) { image_cache_referenced_bytes_.set(n); }

  void add_prompt_tokens(double n) { prompt_tokens_.inc(n); }
  void add_generated_tokens(double n) { generated_tokens_.inc(n); }
  void add_images(double n) { images_.inc(n); }

  void observe_ttft(double seconds) { ttft_.observe(seconds); }
  void observe_inter_token_latency(double seconds) { inter_token_.observe(seconds); }
  void observe_request_duration(double seconds) { request_duration_.observe(seconds); }

  // Called (under a mutex: one scrape at a time) at the start of every render(). Replaces any
  // previous collector; an empty function removes it.
  void set_collector(Collector collector);

  // Runs the collector, then renders every metric. An exception from the collector
  // propagates (the HTTP server answers 500).
  std::string render();

  MetricsRegistry& registry() { return registry_; }
  Gauge& queue_length() { return queue_length_; }
  Gauge& running_requests() { return running_requests_; }
  Gauge& kv_blocks_used() { return kv_blocks_used_; }
  Gauge& kv_blocks_free() { return kv_blocks_free_; }
  Counter& prompt_tokens() { return prompt_tokens_; }
  Counter& generated_tokens() { return generated_tokens_; }
  Counter& images() { return images_; }
  Histogram& ttft() { return ttft_; }
  Histogram& inter_token_latency() { return inter_token_; }
  Histogram& request_duration() { return request_duration_; }

 private:
  static constexpr size_t kNumRpcs = std::size(kRpcs);
  static constexpr size_t kNumHttpRpcs = std::size(kHttpRpcs);
  static constexpr size_t kNumOutcomes = std::size(kOutcomes);

  MetricsRegistry registry_;
  CounterFamily& requests_;
  Counter* known_requests_[kNumRpcs][kNumOutcomes] = {};
  Counter* known_http_requests_[kNumHttpRpcs][kNumOutcomes] = {};
  Gauge& queue_length_;
  Gauge& running_requests_;
  Gauge& kv_blocks_used_;
  Gauge& kv_blocks_free_;
  Gauge& image_cache_bytes_;
  Gauge& image_cache_referenced_bytes_;
  Counter& prompt_tokens_;
  Counter& generated_tokens_;
  Counter& images_;
  Histogram& ttft_;
  Histogram& inter_token_;
  Histogram& request_duration_;

  std::mutex render_mutex_;
  Collector collector_;  // guarded by render_mutex_
};

}  // namespace flamingo
