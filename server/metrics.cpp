#include "server/metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <utility>

#include "model/error.h"

namespace flamingo {
namespace {

std::string_view type_name(MetricType type) {
  switch (type) {
    case MetricType::kCounter:
      return "counter";
    case MetricType::kGauge:
      return "gauge";
    case MetricType::kHistogram:
      return "histogram";
  }
  return "untyped";
}

bool is_metric_name(std::string_view name) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
    const bool digit = c >= '0' && c <= '9';
    if (!alpha && !(digit && i > 0)) return false;
  }
  return true;
}

bool is_label_name(std::string_view name) {
  if (name.empty() || name.starts_with("__")) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    const bool digit = c >= '0' && c <= '9';
    if (!alpha && !(digit && i > 0)) return false;
  }
  return true;
}

void atomic_add(std::atomic<double>& target, double amount) {
  double current = target.load(std::memory_order_relaxed);
  while (!target.compare_exchange_weak(current, current + amount, std::memory_order_relaxed)) {
  }
}

// `{a="x",b="y"` without the closing brace (histograms append le); empty when no labels.
void append_labels(std::string& out, const std::vector<std::string>& names,
                   const std::vector<std::string>& values) {
  for (size_t i = 0; i < names.size(); ++i) {
    out += i == 0 ? '{' : ',';
    out += names[i];
    out += "=\"";
    out += escape_label_value(values[i]);
    out += '"';
  }
}

void append_sample(std::string& out, std::string_view name, std::string_view suffix,
                   const std::vector<std::string>& names, const std::vector<std::string>& values,
                   double value) {
  out += name;
  out += suffix;
  append_labels(out, names, values);
  if (!names.empty()) out += '}';
  out += ' ';
  out += format_metric_value(value);
  out += '\n';
}

void render_child(std::string& out, const std::string& name, const std::vector<std::string>& names,
                  const std::vector<std::string>& values, const Counter& c) {
  append_sample(out, name, "", names, values, c.value());
}

void render_child(std::string& out, const std::string& name, const std::vector<std::string>& names,
                  const std::vector<std::string>& values, const Gauge& g) {
  append_sample(out, name, "", names, values, g.value());
}

void render_child(std::string& out, const std::string& name, const std::vector<std::string>& names,
                  const std::vector<std::string>& values, const Histogram& h) {
  const Histogram::Snapshot s = h.snapshot();
  for (size_t i = 0; i < s.cumulative.size(); ++i) {
    out += name;
    out += "_bucket";
    append_labels(out, names, values);
    out += names.empty() ? "{le=\"" : ",le=\"";
    out += i < s.upper_bounds.size() ? format_metric_value(s.upper_bounds[i]) : "+Inf";
    out += "\"} ";
    out += std::to_string(s.cumulative[i]);
    out += '\n';
  }
  append_sample(out, name, "_sum", names, values, s.sum);
  append_sample(out, name, "_count", names, values, static_cast<double>(s.count));
}

}  // namespace

// ---- Counter / Gauge / Histogram ----

void Counter::inc(double amount) {
  if (!(amount >= 0.0) || std::isinf(amount)) return;  // also rejects NaN
  atomic_add(value_, amount);
}

void Gauge::inc(double amount) { atomic_add(value_, amount); }

Histogram::Histogram(std::vector<double> upper_bounds) : upper_bounds_(std::move(upper_bounds)) {
  for (size_t i = 0; i < upper_bounds_.size(); ++i) {
    if (!std::isfinite(upper_bounds_[i])) {
      throw Error("histogram: bucket bound " + std::to_string(i) + " must be finite, got " +
                  format_metric_value(upper_bounds_[i]));
    }
    if (i > 0 && !(upper_bounds_[i] > upper_bounds_[i - 1])) {
      throw Error("histogram: bucket bounds must increase strictly, got " +
                  format_metric_value(upper_bounds_[i]) + " after " +
                  format_metric_value(upper_bounds_[i - 1]));
    }
  }
  const size_t n = upper_bounds_.size() + 1;
  buckets_ = std::make_unique<std::atomic<uint64_t>[]>(n);
  for (size_t i = 0; i < n; ++i) buckets_[i].store(0, std::memory_order_relaxed);
}

void Histogram::observe(double value) {
  if (std::isnan(value)) return;
  // First bound >= value (le is inclusive); past the end: the +Inf bucket.
  const size_t index =
      std::lower_bound(upper_bounds_.begin(), upper_bounds_.end(), value) - upper_bounds_.begin();
  buckets_[index].fetch_add(1, std::memory_order_relaxed);
  atomic_add(sum_, value);
}

Histogram::Snapshot Histogram::snapshot() const {
  Snapshot s;
  s.upper_bounds = upper_bounds_;
  s.cumulative.resize(upper_bounds_.size() + 1);
  uint64_t running = 0;
  for (size_t i = 0; i < s.cumulative.size(); ++i) {
    running += buckets_[i].load(std::memory_order_relaxed);
    s.cumulative[i] = running;
  }
  s.count = running;
  s.sum = sum_.load(std::memory_order_relaxed);
  return s;
}

// ---- families ----

MetricFamilyBase::MetricFamilyBase(std::string name, std::string help, MetricType type,
                                   std::vector<std::string> label_names)
    : name_(std::move(name)),
      help_(std::move(help)),
      type_(type),
      label_names_(std::move(label_names)) {
  if (!is_metric_name(name_)) {
    throw Error("metrics: metric name must match [a-zA-Z_:][a-zA-Z0-9_:]*, got \"" + name_ + "\"");
  }
  for (size_t i = 0; i < label_names_.size(); ++i) {
    const std::string& label = label_names_[i];
    if (!is_label_name(label)) {
      throw Error("metrics: " + name_ + ": label name must match [a-zA-Z_][a-zA-Z0-9_]* " +
                  "and not start with __, got \"" + label + "\"");
    }
    if (type_ == MetricType::kHistogram && label == "le") {
      throw Error("metrics: " + name_ + ": label name \"le\" is reserved for histograms");
    }
    for (size_t j = 0; j < i; ++j) {
      if (label_names_[j] == label) {
        throw Error("metrics: " + name_ + ": label name \"" + label + "\" given twice");
      }
    }
  }
}

void MetricFamilyBase::check_label_count(size_t n) const {
  if (n != label_names_.size()) {
    throw Error("metrics: " + name_ + ": expected " + std::to_string(label_names_.size()) +
                " label values, got " + std::to_string(n));
  }
}

void MetricFamilyBase::render_header(std::string& out) const {
  out += "# HELP ";
  out += name_;
  out += ' ';
  out += escape_help(help_);
  out += "\n# TYPE ";
  out += name_;
  out += ' ';
  out += type_name(type_);
  out += '\n';
}

template <class T>
MetricFamily<T>::MetricFamily(std::string name, std::string help, MetricType type,
                              std::vector<std::string> label_names, Factory factory)
    : MetricFamilyBase(std::move(name), std::move(help), type, std::move(label_names)),
      factory_(std::move(factory)) {
  if (label_names_.empty()) children_.emplace(std::vector<std::string>{}, factory_());
}

template <class T>
T& MetricFamily<T>::with(std::span<const std::string_view> label_values) {
  check_label_count(label_values.size());
  std::vector<std::string> key(label_values.begin(), label_values.end());
  std::lock_guard lock(mutex_);
  auto it = children_.find(key);
  if (it == children_.end()) it = children_.emplace(std::move(key), factory_()).first;
  return *it->second;
}

template <class T>
void MetricFamily<T>::render(std::string& out) const {
  render_header(out);
  std::lock_guard lock(mutex_);
  for (const auto& [values, child] : children_)
    render_child(out, name_, label_names_, values, *child);
}

template class MetricFamily<Counter>;
template class MetricFamily<Gauge>;
template class MetricFamily<Histogram>;

// ---- registry ----

void MetricsRegistry::add(std::unique_ptr<MetricFamilyBase> family) {
  std::lock_guard lock(mutex_);
  for (const auto& f : families_) {
    if (f->name() == family->name()) {
      throw Error("metrics: metric \"" + family->name() + "\" registered twice");
    }
  }
  families_.push_back(std::move(family));
}

CounterFamily& MetricsRegistry::counter_family(std::string name, std::string help,
                                               std::vector<std::string> label_names) {
  auto family = std::make_unique<CounterFamily>(std::move(name), std::move(help),
                                                MetricType::kCounter, std::move(label_names),
                                                [] { return std::make_unique<Counter>(); });
  CounterFamily& ref = *family;
  add(std::move(family));
  return ref;
}

GaugeFamily& MetricsRegistry::gauge_family(std::string name, std::string help,
                                           std::vector<std::string> label_names) {
  auto family = std::make_unique<GaugeFamily>(std::move(name), std::move(help), MetricType::kGauge,
                                              std::move(label_names),
                                              [] { return std::make_unique<Gauge>(); });
  GaugeFamily& ref = *family;
  add(std::move(family));
  return ref;
}

HistogramFamily& MetricsRegistry::histogram_family(std::string name, std::string help,
                                                   std::vector<std::string> label_names,
                                                   std::vector<double> upper_bounds) {
  Histogram validated(upper_bounds);  // throws on bad bounds before registering anything
  auto family = std::make_unique<HistogramFamily>(
      std::move(name), std::move(help), MetricType::kHistogram, std::move(label_names),
      [bounds = std::move(upper_bounds)] { return std::make_unique<Histogram>(bounds); });
  HistogramFamily& ref = *family;
  add(std::move(family));
  return ref;
}

Counter& MetricsRegistry::counter(std::string name, std::string help) {
  return counter_family(std::move(name), std::move(help), {}).with({});
}

Gauge& MetricsRegistry::gauge(std::string name, std::string help) {
  return gauge_family(std::move(name), std::move(help), {}).with({});
}

Histogram& MetricsRegistry::histogram(std::string name, std::string help,
                                      std::vector<double> upper_bounds) {
  return histogram_family(std::move(name), std::move(help), {}, std::move(upper_bounds)).with({});
}

std::string MetricsRegistry::render() const {
  std::string out;
  std::lock_guard lock(mutex_);
  for (const auto& family : families_) family->render(out);
  return out;
}

// ---- text helpers ----

namespace {

// Backslash and newline always; the double quote too inside label values.
std::string escape(std::string_view text, bool quote) {
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '"' && quote) {
      out += "\\\"";
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

std::string escape_label_value(std::string_view value) { return escape(value, true); }

std::string escape_help(std::string_view help) { return escape(help, false); }

std::string format_metric_value(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  char buf[64];
  const auto result = std::to_chars(buf, buf + sizeof(buf), value);
  return std::string(buf, result.ptr);
}

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

ServerMetrics::ServerMetrics()
    : requests_(registry_.counter_family("flamingo_requests_total",
                                         "Finished requests by method, outcome and API.",
                                         {"rpc", "outcome", "api"})),
      queue_length_(registry_.gauge("flamingo_queue_length",
                                    "Requests waiting for admission to the running batch.")),
      running_requests_(
          registry_.gauge("flamingo_running_requests", "Sequences in the running batch.")),
      kv_blocks_used_(registry_.gauge("flamingo_kv_blocks_used", "KV cache blocks in use.")),
      kv_blocks_free_(registry_.gauge("flamingo_kv_blocks_free", "KV cache blocks free.")),
      image_cache_bytes_(registry_.gauge("flamingo_image_cache_bytes",
                                         "Encoded images' K/V held in the image cache.")),
      image_cache_referenced_bytes_(
          registry_.gauge("flamingo_image_cache_referenced_bytes",
                          "Image cache bytes held by running requests (0 when idle).")),
      prompt_tokens_(
          registry_.counter("flamingo_prompt_tokens_total", "Prompt tokens of admitted requests.")),
      generated_tokens_(
          registry_.counter("flamingo_generated_tokens_total", "Generated (completion) tokens.")),
      images_(registry_.counter("flamingo_images_total", "Images in admitted requests.")),
      ttft_(registry_.histogram("flamingo_time_to_first_token_seconds",
                                "Time from request arrival to its first generated token.",
                                ttft_buckets())),
      inter_token_(registry_.histogram("flamingo_inter_token_latency_seconds",
                                       "Time between consecutive generated tokens of a request.",
                                       inter_token_buckets())),
      request_duration_(registry_.histogram("flamingo_request_duration_seconds",
                                            "Time from request arrival to its end, any outcome.",
                                            request_duration_buckets())) {
  for (size_t r = 0; r < kNumRpcs; ++r) {
    for (size_t o = 0; o < kNumOutcomes; ++o) {
      known_requests_[r][o] = &requests_.with({kRpcs[r], kOutcomes[o], "grpc"});
    }
  }
  for (size_t r = 0; r < kNumHttpRpcs; ++r) {
    for (size_t o = 0; o < kNumOutcomes; ++o) {
      known_http_requests_[r][o] = &requests_.with({kHttpRpcs[r], kOutcomes[o], "openai"});
    }
  }
}

void ServerMetrics::record_request(std::string_view rpc, std::string_view outcome,
                                   std::string_view api) {
  const auto o =
      std::find(std::begin(kOutcomes), std::end(kOutcomes), outcome) - std::begin(kOutcomes);
  if (static_cast<size_t>(o) < kNumOutcomes) {
    if (api == "grpc") {
      const auto r = std::find(std::begin(kRpcs), std::end(kRpcs), rpc) - std::begin(kRpcs);
      if (static_cast<size_t>(r) < kNumRpcs) return known_requests_[r][o]->inc();
    } else if (api == "openai") {
      const auto r =
          std::find(std::begin(kHttpRpcs), std::end(kHttpRpcs), rpc) - std::begin(kHttpRpcs);
      if (static_cast<size_t>(r) < kNumHttpRpcs) return known_http_requests_[r][o]->inc();
    }
  }
  requests_.with({rpc, outcome, api}).inc();
}

double ServerMetrics::requests(std::string_view rpc, std::string_view outcome,
                               std::string_view api) {
  return requests_.with({rpc, outcome, api}).value();
}

void ServerMetrics::set_collector(Collector collector) {
  std::lock_guard lock(render_mutex_);
  collector_ = std::move(collector);
}

std::string ServerMetrics::render() {
  std::lock_guard lock(render_mutex_);
  if (collector_) collector_(*this);
  return registry_.render();
}

}  // namespace flamingo
