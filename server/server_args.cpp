#include "server/server_args.h"

#include <charconv>
#include <cmath>
#include <functional>
#include <limits>
#include <sstream>
#include <variant>

namespace flamingo {
namespace {

struct Flag {
  const char* name;
  const char* help;
  // Pointer into a ServerArgs; bool flags take no value.
  std::variant<std::string ServerArgs::*, int32_t ServerArgs::*, int64_t ServerArgs::*,
               double ServerArgs::*, bool ServerArgs::*, int32_t ServerLimits::*,
               int64_t ServerLimits::*>
      field;
  double min = 0, max = 0;  // numeric range (inclusive)
  std::vector<std::string> choices = {};
  bool bool_value = true;  // value stored by a bool flag
};

constexpr double kI32 = std::numeric_limits<int32_t>::max();
constexpr double kI64 = 9.0e18;

const std::vector<Flag>& flags() {
  static const std::vector<Flag> kFlags = {
      {"--model", "checkpoint folder (HF layout); default: the bundled tiny model",
       &ServerArgs::model_dir},
      {"--host", "address to listen on", &ServerArgs::host},
      {"--port", "gRPC port; 0 picks a free one (logged)", &ServerArgs::port, 0, 65535},
      {"--dtype", "compute dtype", &ServerArgs::dtype, 0, 0, {"auto", "float32", "bfloat16"}},
      {"--weights",
       "how linear weights are held (auto: bfloat16 when the compute dtype or the checkpoint "
       "is bfloat16, else float32)",
       &ServerArgs::weights,
       0,
       0,
       {"auto", "float32", "bfloat16", "int8"}},
      {"--threads", "CPU threads for the model; 0 = one per core", &ServerArgs::threads, 0, 1024},
      {"--log-level",
       "log level",
       &ServerArgs::log_level,
       0,
       0,
       {"trace", "debug", "info", "warn", "error", "off"}},
      {"--metrics-host", "address of the Prometheus endpoint", &ServerArgs::metrics_host},
      {"--metrics-port", "Prometheus /metrics port; 0 turns it off", &ServerArgs::metrics_port, 0,
       65535},
      {"--drain-timeout", "seconds running requests may take to finish after SIGTERM/SIGINT",
       &ServerArgs::drain_timeout_s, 0, 86400},
      {"--templates", "Caption/AnswerQuestion prompt templates (JSON); default: the family's",
       &ServerArgs::templates_path},
      {"--context-length", "tokens per sequence; 0 = the checkpoint's", &ServerArgs::context_length,
       0, 1 << 20},
      {"--block-size", "tokens per KV cache block", &ServerArgs::block_size, 1, 1024},
      {"--kv-cache-mb", "KV cache size in MiB; 0 = max-running full contexts, at most 4 GiB",
       &ServerArgs::kv_cache_mb, 0, 1 << 24},
      {"--image-cache-mb", "encoded-image cache in MiB; 0 = room for 4 images per running request",
       &ServerArgs::image_cache_mb, 0, 1 << 24},
      {"--token-budget", "tokens per engine step (prefill chunk size); >= --max-running",
       &ServerArgs::token_budget, 1, 1 << 20},
      {"--image-budget",
       "images encoded per engine step at most (a request's images stay together); 0 = no limit",
       &ServerArgs::image_budget, 0, 1 << 20},
      {"--no-prefix-caching",
       "do not share KV blocks of common prompt prefixes",
       &ServerArgs::prefix_caching,
       0,
       0,
       {},
       false},
      {"--load-delay-ms", "wait this long before loading the model (tests of the loading state)",
       &ServerArgs::load_delay_ms, 0, 600000},
      {"--http-port", "OpenAI-compatible HTTP API port (/v1/chat/completions ...); 0 turns it off",
       &ServerArgs::http_port, 0, 65535},
      {"--http-host", "address of the HTTP API; default: --host", &ServerArgs::http_host},
      {"--http-threads",
       "HTTP connections served at once (a thread each, started on demand; more wait)",
       &ServerArgs::http_threads, 1, 65536},
      {"--http-keep-alive",
       "seconds an idle HTTP keep-alive connection stays open (also bounds the wait for them "
       "at shutdown)",
       &ServerArgs::http_keep_alive_s, 1, 3600},
      {"--served-model-name", "the model id of the HTTP API; default: the model folder's name",
       &ServerArgs::served_model_name},
      {"--chat-template",
       "chat template (JSON, server/chat_template.h); default: "
       "<model>/flamingo_chat_template.json, "
       "else the family's bundled one",
       &ServerArgs::chat_template_path},
      {"--allowed-local-media-path", "folder whose files HTTP requests may name as file:// images",
       &ServerArgs::allowed_local_media_path},
      {"--allow-image-urls",
       "fetch http(s):// image URLs of HTTP requests (size, time and redirect limits)",
       &ServerArgs::allow_image_urls},
      {"--allow-private-image-urls",
       "also fetch image URLs whose host is a private, loopback or link-local address",
       &ServerArgs::allow_private_image_urls},
      {"--image-url-timeout", "seconds one image URL may take to fetch, redirects included",
       &ServerArgs::image_url_timeout_s, 0.1, 3600},
      {"--image-url-max-redirects", "redirects one image URL may take",
       &ServerArgs::image_url_max_redirects, 0, 20},
      {"--max-choices", "largest n (choices) of an HTTP request", &ServerArgs::max_choices, 1, 128},
      {"--api-key-file",
       "API keys, one a line (also FLAMINGO_API_KEY): gRPC calls and /v1/ HTTP requests must "
       "send 'authorization: Bearer KEY'; health and /metrics stay open",
       &ServerArgs::api_key_file},
      {"--no-reflection",
       "do not serve gRPC server reflection",
       &ServerArgs::reflection,
       0,
       0,
       {},
       false},
      {"--tls-cert", "PEM certificate (chain): gRPC and HTTP serve TLS (with --tls-key)",
       &ServerArgs::tls_cert},
      {"--tls-key", "PEM private key of --tls-cert", &ServerArgs::tls_key},
      {"--tls-client-ca",
       "PEM CA certificates: clients must present a certificate they signed (mutual TLS)",
       &ServerArgs::tls_client_ca},
      {"--max-images", "images per request", &ServerLimits::max_images_per_request, 0, 4096},
      {"--max-image-bytes", "encoded bytes per image", &ServerLimits::max_image_bytes, 1, 1 << 30},
      {"--max-image-pixels", "declared width x height per image", &ServerLimits::max_image_pixels,
       1, kI64},
      {"--max-prompt-tokens", "prompt tokens per request; 0 = the context length",
       &ServerLimits::max_prompt_tokens, 0, kI32},
      {"--max-new-tokens", "largest max_new_tokens a request may ask for",
       &ServerLimits::max_new_tokens, 1, kI32},
      {"--default-max-new-tokens", "max_new_tokens of a request that sends 0",
       &ServerLimits::default_max_new_tokens, 1, kI32},
      {"--max-stop-strings", "stop strings per request", &ServerLimits::max_stop_strings, 0, 1024},
      {"--max-stop-string-bytes", "bytes per stop string", &ServerLimits::max_stop_string_bytes, 1,
       65536},
      {"--max-top-logprobs", "largest top_logprobs", &ServerLimits::max_top_logprobs, 0, 1000},
      {"--max-candidates", "candidates per Score request", &ServerLimits::max_candidates, 1, 65536},
      {"--max-text-bytes", "bytes of text per request", &ServerLimits::max_text_bytes, 1, 1 << 30},
      {"--max-queued", "requests waiting for a slot; beyond: RESOURCE_EXHAUSTED",
       &ServerLimits::max_queued_requests, 0, 1 << 20},
      {"--max-running", "requests in the running batch", &ServerLimits::max_running_requests, 1,
       4096},
  };
  return kFlags;
}

std::string bad(const std::string& flag, const std::string& what, const std::string& value) {
  return flag + ": " + what + ", got '" + value + "' (see --help)";
}

template <typename T>
T parse_integer(const Flag& f, const std::string& value) {
  T out{};
  const char* end = value.data() + value.size();
  auto [ptr, ec] = std::from_chars(value.data(), end, out);
  if (ec != std::errc() || ptr != end)
    throw ServerUsageError(bad(f.name, "expected an integer", value));
  if (out < f.min || out > f.max) {
    std::ostringstream range;
    range << "expected an integer in [" << static_cast<int64_t>(f.min) << ", "
          << static_cast<int64_t>(f.max) << "]";
    throw ServerUsageError(bad(f.name, range.str(), value));
  }
  return out;
}

double parse_double(const Flag& f, const std::string& value) {
  double out = 0;
  const char* end = value.data() + value.size();
  auto [ptr, ec] = std::from_chars(value.data(), end, out);
  if (ec != std::errc() || ptr != end || !std::isfinite(out) || out < f.min || out > f.max) {
    std::ostringstream range;
    range << "expected a number in [" << f.min << ", " << f.max << "]";
    throw ServerUsageError(bad(f.name, range.str(), value));
  }
  return out;
}

void assign(ServerArgs& args, const Flag& f, const std::string& value) {
  std::visit(
      [&](auto member) {
        using M = decltype(member);
        if constexpr (std::is_same_v<M, std::string ServerArgs::*>) {
          if (!f.choices.empty()) {
            bool ok = false;
            std::string list;
            for (const std::string& c : f.choices) {
              ok |= c == value;
              list += (list.empty() ? "" : "|") + c;
            }
            if (!ok) throw ServerUsageError(bad(f.name, "expected one of " + list, value));
          }
          args.*member = value;
        } else if constexpr (std::is_same_v<M, int32_t ServerArgs::*>) {
          args.*member = parse_integer<int32_t>(f, value);
        } else if constexpr (std::is_same_v<M, int64_t ServerArgs::*>) {
          args.*member = parse_integer<int64_t>(f, value);
        } else if constexpr (std::is_same_v<M, double ServerArgs::*>) {
          args.*member = parse_double(f, value);
        } else if constexpr (std::is_same_v<M, bool ServerArgs::*>) {
          args.*member = f.bool_value;
        } else if constexpr (std::is_same_v<M, int32_t ServerLimits::*>) {
          args.limits.*member = parse_integer<int32_t>(f, value);
        } else {
          args.limits.*member = parse_integer<int64_t>(f, value);
        }
      },
      f.field);
}

std::string current_value(const ServerArgs& args, const Flag& f) {
  return std::visit(
      [&](auto member) -> std::string {
        using M = decltype(member);
        std::ostringstream s;
        if constexpr (std::is_same_v<M, std::string ServerArgs::*>) {
          s << (args.*member).c_str();
        } else if constexpr (std::is_same_v<M, bool ServerArgs::*>) {
          s << ((args.*member) == f.bool_value ? "set" : "unset");
        } else if constexpr (std::is_same_v<M, int32_t ServerLimits::*> ||
                             std::is_same_v<M, int64_t ServerLimits::*>) {
          s << args.limits.*member;
        } else {
          s << args.*member;
        }
        return s.str();
      },
      f.field);
}

}  // namespace

ServerArgs parse_server_args(const std::vector<std::string>& argv) {
  ServerArgs args;
  for (size_t i = 0; i < argv.size(); ++i) {
    std::string name = argv[i];
    if (name == "-h" || name == "--help") {
      args.help = true;
      continue;
    }
    std::string value;
    bool has_inline = false;
    if (const size_t eq = name.find('='); name.rfind("--", 0) == 0 && eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_inline = true;
    }
    const Flag* flag = nullptr;
    for (const Flag& f : flags()) {
      if (name == f.name) flag = &f;
    }
    if (flag == nullptr) throw ServerUsageError("unknown argument '" + argv[i] + "' (see --help)");
    if (std::holds_alternative<bool ServerArgs::*>(flag->field)) {
      if (has_inline) throw ServerUsageError(std::string(flag->name) + " takes no value");
      assign(args, *flag, "");
      continue;
    }
    if (!has_inline) {
      if (i + 1 >= argv.size()) throw ServerUsageError(std::string(flag->name) + " needs a value");
      value = argv[++i];
    }
    assign(args, *flag, value);
  }
  if (args.limits.default_max_new_tokens > args.limits.max_new_tokens) {
    throw ServerUsageError(
        "--default-max-new-tokens " + std::to_string(args.limits.default_max_new_tokens) +
        " exceeds --max-new-tokens " + std::to_string(args.limits.max_new_tokens));
  }
  if (args.token_budget < args.limits.max_running_requests) {
    throw ServerUsageError("--token-budget " + std::to_string(args.token_budget) +
                           " must be >= --max-running " +
                           std::to_string(args.limits.max_running_requests));
  }
  if (args.tls_cert.empty() != args.tls_key.empty()) {
    throw ServerUsageError(args.tls_cert.empty() ? "--tls-key needs --tls-cert"
                                                 : "--tls-cert needs --tls-key");
  }
  if (!args.tls_client_ca.empty() && args.tls_cert.empty()) {
    throw ServerUsageError("--tls-client-ca needs --tls-cert and --tls-key");
  }
  return args;
}

std::string server_usage() {
  std::ostringstream s;
  s << "usage: flamingo-server [flags]\n"
       "Serves an IDEFICS checkpoint over gRPC (service flamingo.v1.Flamingo, plus\n"
       "grpc.health.v1.Health and server reflection) and over the OpenAI-compatible HTTP API\n"
       "(/v1/chat/completions, /v1/completions, /v1/models on --http-port).\n"
       "SIGTERM/SIGINT drain and exit 0.\n\n"
       "flags (--name VALUE or --name=VALUE; default in brackets):\n";
  const ServerArgs defaults;
  for (const Flag& f : flags()) {
    std::string left = std::string("  ") + f.name;
    if (!std::holds_alternative<bool ServerArgs::*>(f.field)) left += " V";
    s << left << std::string(left.size() < 30 ? 30 - left.size() : 1, ' ') << f.help;
    if (!std::holds_alternative<bool ServerArgs::*>(f.field)) {
      const std::string d = current_value(defaults, f);
      s << " [" << (d.empty() ? "-" : d) << "]";
    }
    s << "\n";
  }
  s << "  -h, --help                    this text\n";
  return s.str();
}

std::vector<std::string> describe_server_args(const ServerArgs& args) {
  std::vector<std::string> out;
  for (const Flag& f : flags())
    out.push_back(std::string(f.name + 2) + " = " + current_value(args, f));
  return out;
}

}  // namespace flamingo
