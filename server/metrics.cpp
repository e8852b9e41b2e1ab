#include "server/metrics.h"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/metric_family.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <algorithm>
#include <cmath>
#include <utility>

namespace flamingo {
namespace {

constexpr const char* kRequestsName = "flamingo_requests_total";
// flamingo_requests_total's label names in their documented (and rendered) order.
const std::vector<std::string>& request_label_names() {
  static const std::vector<std::string> kNames = {"rpc", "outcome", "api"};
  return kNames;
}

prometheus::Labels request_labels(std::string_view rpc, std::string_view outcome,
                                  std::string_view api) {
  return {{"rpc", std::string(rpc)}, {"outcome", std::string(outcome)}, {"api", std::string(api)}};
}

prometheus::Gauge& gauge(prometheus::Registry& registry, const std::string& name,
                         const std::string& help) {
  return prometheus::BuildGauge().Name(name).Help(help).Register(registry).Add({});
}

prometheus::Counter& counter(prometheus::Registry& registry, const std::string& name,
                             const std::string& help) {
  return prometheus::BuildCounter().Name(name).Help(help).Register(registry).Add({});
}

prometheus::Histogram& histogram(prometheus::Registry& registry, const std::string& name,
                                 const std::string& help, const std::vector<double>& bounds) {
  return prometheus::BuildHistogram().Name(name).Help(help).Register(registry).Add({}, bounds);
}

// prometheus-cpp keeps a series' labels in a std::map (rendered sorted by name) and a family's
// series in a hash map. Puts the labels back in `names` order (others after them) and sorts the
// series by their label values, so the text stays as documented.
void order_labels(prometheus::MetricFamily& family, const std::vector<std::string>& names) {
  const auto rank = [&names](const prometheus::ClientMetric::Label& l) {
    return std::find(names.begin(), names.end(), l.name) - names.begin();
  };
  for (prometheus::ClientMetric& m : family.metric) {
    std::stable_sort(m.label.begin(), m.label.end(),
                     [&rank](const auto& a, const auto& b) { return rank(a) < rank(b); });
  }
  std::sort(family.metric.begin(), family.metric.end(),
            [](const prometheus::ClientMetric& a, const prometheus::ClientMetric& b) {
              return std::lexicographical_compare(
                  a.label.begin(), a.label.end(), b.label.begin(), b.label.end(),
                  [](const auto& x, const auto& y) { return x.value < y.value; });
            });
}

void add_to_counter(prometheus::Counter& c, double amount) {
  // prometheus-cpp ignores negative amounts but would add NaN and infinities.
  if (std::isfinite(amount) && amount >= 0.0) c.Increment(amount);
}

void observe(prometheus::Histogram& h, double value) {
  if (!std::isnan(value)) h.Observe(value);  // prometheus-cpp would count NaN in the first bucket
}

}  // namespace

std::string_view outcome_for_status_code(int code) {
  switch (code) {
    case 0:
      return "ok";
    case 1:
      return "cancelled";
    case 3:
      return "invalid_argument";
    case 4:
      return "deadline_exceeded";
    case 8:
      return "resource_exhausted";
    case 14:
      return "unavailable";
    case 16:
      return "unauthenticated";
    default:
      return "internal";
  }
}

// ---- ServerMetrics ----

struct ServerMetrics::Impl {
  prometheus::Registry registry;
  prometheus::Family<prometheus::Counter>& requests =
      prometheus::BuildCounter()
          .Name(kRequestsName)
          .Help("Finished requests by method, outcome and API.")
          .Register(registry);
  prometheus::Counter* known_requests[kNumRpcs][kNumOutcomes] = {};
  prometheus::Counter* known_http_requests[kNumHttpRpcs][kNumOutcomes] = {};
  prometheus::Gauge& queue_length = gauge(registry, "flamingo_queue_length",
                                          "Requests waiting for admission to the running batch.");
  prometheus::Gauge& running_requests =
      gauge(registry, "flamingo_running_requests", "Sequences in the running batch.");
  prometheus::Gauge& kv_blocks_used =
      gauge(registry, "flamingo_kv_blocks_used", "KV cache blocks in use.");
  prometheus::Gauge& kv_blocks_free =
      gauge(registry, "flamingo_kv_blocks_free", "KV cache blocks free.");
  prometheus::Gauge& image_cache_bytes =
      gauge(registry, "flamingo_image_cache_bytes", "Encoded images' K/V held in the image cache.");
  prometheus::Gauge& image_cache_referenced_bytes =
      gauge(registry, "flamingo_image_cache_referenced_bytes",
            "Image cache bytes held by running requests (0 when idle).");
  prometheus::Counter& prompt_tokens =
      counter(registry, "flamingo_prompt_tokens_total", "Prompt tokens of admitted requests.");
  prometheus::Counter& generated_tokens =
      counter(registry, "flamingo_generated_tokens_total", "Generated (completion) tokens.");
  prometheus::Counter& images =
      counter(registry, "flamingo_images_total", "Images in admitted requests.");
  prometheus::Histogram& ttft =
      histogram(registry, "flamingo_time_to_first_token_seconds",
                "Time from request arrival to its first generated token.", ttft_buckets());
  prometheus::Histogram& inter_token =
      histogram(registry, "flamingo_inter_token_latency_seconds",
                "Time between consecutive generated tokens of a request.", inter_token_buckets());
  prometheus::Histogram& request_duration =
      histogram(registry, "flamingo_request_duration_seconds",
                "Time from request arrival to its end, any outcome.", request_duration_buckets());

  Impl() {
    for (size_t r = 0; r < kNumRpcs; ++r) {
      for (size_t o = 0; o < kNumOutcomes; ++o) {
        known_requests[r][o] = &requests.Add(request_labels(kRpcs[r], kOutcomes[o], "grpc"));
      }
    }
    for (size_t r = 0; r < kNumHttpRpcs; ++r) {
      for (size_t o = 0; o < kNumOutcomes; ++o) {
        known_http_requests[r][o] =
            &requests.Add(request_labels(kHttpRpcs[r], kOutcomes[o], "openai"));
      }
    }
  }
};

const std::vector<double>& ServerMetrics::ttft_buckets() {
  static const std::vector<double> kBuckets = {0.005, 0.01, 0.025, 0.05, 0.1,  0.25, 0.5,
                                               1.0,   2.5,  5.0,   10.0, 20.0, 30.0, 60.0};
  return kBuckets;
}

const std::vector<double>& ServerMetrics::inter_token_buckets() {
  static const std::vector<double> kBuckets = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075,
                                               0.1,   0.15,   0.25,  0.5,  1.0,   2.5,  10.0};
  return kBuckets;
}

const std::vector<double>& ServerMetrics::request_duration_buckets() {
  static const std::vector<double> kBuckets = {0.005, 0.01, 0.025, 0.05, 0.1,  0.25,  0.5,  1.0,
                                               2.5,   5.0,  10.0,  30.0, 60.0, 120.0, 300.0};
  return kBuckets;
}

ServerMetrics::ServerMetrics() : impl_(std::make_unique<Impl>()) {}

ServerMetrics::~ServerMetrics() = default;

void ServerMetrics::record_request(std::string_view rpc, std::string_view outcome,
                                   std::string_view api) {
  const auto o =
      std::find(std::begin(kOutcomes), std::end(kOutcomes), outcome) - std::begin(kOutcomes);
  if (static_cast<size_t>(o) < kNumOutcomes) {
    if (api == "grpc") {
      const auto r = std::find(std::begin(kRpcs), std::end(kRpcs), rpc) - std::begin(kRpcs);
      if (static_cast<size_t>(r) < kNumRpcs) return impl_->known_requests[r][o]->Increment();
    } else if (api == "openai") {
      const auto r =
          std::find(std::begin(kHttpRpcs), std::end(kHttpRpcs), rpc) - std::begin(kHttpRpcs);
      if (static_cast<size_t>(r) < kNumHttpRpcs) {
        return impl_->known_http_requests[r][o]->Increment();
      }
    }
  }
  impl_->requests.Add(request_labels(rpc, outcome, api)).Increment();
}

double ServerMetrics::requests(std::string_view rpc, std::string_view outcome,
                               std::string_view api) {
  return impl_->requests.Add(request_labels(rpc, outcome, api)).Value();
}

void ServerMetrics::set_queue_length(double n) { impl_->queue_length.Set(n); }
void ServerMetrics::set_running_requests(double n) { impl_->running_requests.Set(n); }
void ServerMetrics::set_kv_blocks_used(double n) { impl_->kv_blocks_used.Set(n); }
void ServerMetrics::set_kv_blocks_free(double n) { impl_->kv_blocks_free.Set(n); }
void ServerMetrics::set_image_cache_bytes(double n) { impl_->image_cache_bytes.Set(n); }
void ServerMetrics::set_image_cache_referenced_bytes(double n) {
  impl_->image_cache_referenced_bytes.Set(n);
}

void ServerMetrics::add_prompt_tokens(double n) { add_to_counter(impl_->prompt_tokens, n); }
void ServerMetrics::add_generated_tokens(double n) { add_to_counter(impl_->generated_tokens, n); }
void ServerMetrics::add_images(double n) { add_to_counter(impl_->images, n); }

void ServerMetrics::observe_ttft(double seconds) { observe(impl_->ttft, seconds); }
void ServerMetrics::observe_inter_token_latency(double seconds) {
  observe(impl_->inter_token, seconds);
}
void ServerMetrics::observe_request_duration(double seconds) {
  observe(impl_->request_duration, seconds);
}

void ServerMetrics::set_collector(Collector collector) {
  std::lock_guard lock(render_mutex_);
  collector_ = std::move(collector);
}

std::string ServerMetrics::render() {
  std::lock_guard lock(render_mutex_);
  if (collector_) collector_(*this);
  std::vector<prometheus::MetricFamily> families = impl_->registry.Collect();
  for (prometheus::MetricFamily& family : families) {
    if (family.name == kRequestsName) order_labels(family, request_label_names());
  }
  return prometheus::TextSerializer().Serialize(families);
}

}  // namespace flamingo
