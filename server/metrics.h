// The server's Prometheus metrics: ServerMetrics, our metric set (the names below are a
// stable contract for dashboards), over prometheus-cpp's core library (its registry, counters,
// gauges, histograms and text serializer, format 0.0.4).
//
// Thread-safety: ServerMetrics is thread-safe. Updates (record_request, the setters, add_*,
// observe_*) may come from any thread (the engine thread, gRPC and HTTP threads); counters and
// gauges are atomics, a histogram takes its own short mutex, and record_request for the known
// label values takes no lock. render() may run concurrently with updates (from the HTTP
// threads) and sees each value atomically, a histogram's _count always equal to its +Inf
// bucket. Torch-free and gRPC-free; prometheus-cpp stays out of this header.
#pragma once

#include <cstddef>
#include <functional>
#include <iterator>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace flamingo {

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
  ~ServerMetrics();
  ServerMetrics(const ServerMetrics&) = delete;
  ServerMetrics& operator=(const ServerMetrics&) = delete;

  // flamingo_requests_total{rpc, outcome, api} += 1. Known names take a lock-free path; other
  // values are recorded as given (a new series).
  void record_request(std::string_view rpc, std::string_view outcome,
                      std::string_view api = "grpc");
  // The current value of one flamingo_requests_total series (creates it if new).
  double requests(std::string_view rpc, std::string_view outcome, std::string_view api = "grpc");

  void set_queue_length(double n);
  void set_running_requests(double n);
  void set_kv_blocks_used(double n);
  void set_kv_blocks_free(double n);
  void set_image_cache_bytes(double n);
  void set_image_cache_referenced_bytes(double n);

  // Counters: negative, NaN and infinite amounts are ignored (a counter never goes down; the
  // hot path does not throw).
  void add_prompt_tokens(double n);
  void add_generated_tokens(double n);
  void add_images(double n);

  // Histograms (`le` inclusive, +Inf implicit): NaN is ignored.
  void observe_ttft(double seconds);
  void observe_inter_token_latency(double seconds);
  void observe_request_duration(double seconds);

  // Called (under a mutex: one scrape at a time) at the start of every render(). Replaces any
  // previous collector; an empty function removes it.
  void set_collector(Collector collector);

  // Runs the collector, then renders every metric with prometheus-cpp's text serializer
  // (families grouped by type: counters, gauges, histograms). flamingo_requests_total keeps
  // its labels in the order rpc, outcome, api and its series sorted by them (text matched by
  // tests and scripts). An exception from the collector propagates (the HTTP server answers
  // 500).
  std::string render();

 private:
  static constexpr size_t kNumRpcs = std::size(kRpcs);
  static constexpr size_t kNumHttpRpcs = std::size(kHttpRpcs);
  static constexpr size_t kNumOutcomes = std::size(kOutcomes);

  struct Impl;  // the prometheus-cpp registry and the metric objects (metrics.cpp)
  std::unique_ptr<Impl> impl_;

  std::mutex render_mutex_;
  Collector collector_;  // guarded by render_mutex_
};

}  // namespace flamingo
