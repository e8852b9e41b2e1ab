#include "server/server_args.h"

#include <limits>

#include "util/flag_table.h"
#include "util/model_flags.h"

namespace flamingo {
namespace {

using flags::nested;
using Table = flags::FlagTable<ServerArgs, ServerUsageError>;

constexpr int32_t kI32 = std::numeric_limits<int32_t>::max();

flags::FlagStyle server_style() {
  flags::FlagStyle s;
  s.pipe_choices = true;  // "expected one of auto|float32|bfloat16"
  s.value_note = " (see --help)";
  s.column = 30;
  s.metavar = "V";
  return s;
}

Table make_table() {
  Table t(server_style());
  flags::add_model_flags(t);  // --model --dtype --weights --device --threads --context-length
  t.text("--host", "address to listen on", &ServerArgs::host);
  t.integer("--port", "gRPC port; 0 picks a free one (logged)", &ServerArgs::port, 0, 65535);
  t.choice("--log-level", "log level", &ServerArgs::log_level,
           {"trace", "debug", "info", "warn", "error", "off"});
  t.text("--metrics-host", "address of the Prometheus endpoint", &ServerArgs::metrics_host);
  t.integer("--metrics-port", "Prometheus /metrics port; 0 turns it off", &ServerArgs::metrics_port,
            0, 65535);
  t.number("--drain-timeout", "seconds running requests may take to finish after SIGTERM/SIGINT",
           &ServerArgs::drain_timeout_s, 0, 86400);
  t.text("--templates", "Caption/AnswerQuestion prompt templates (JSON); default: the family's",
         &ServerArgs::templates_path);
  t.integer("--block-size", "tokens per KV cache block", &ServerArgs::block_size, 1, 1024);
  t.integer("--kv-cache-mb", "KV cache size in MiB; 0 = max-running full contexts, at most 4 GiB",
            &ServerArgs::kv_cache_mb, 0, 1 << 24);
  t.integer("--image-cache-mb",
            "encoded-image cache in MiB; 0 = room for 4 images per running request",
            &ServerArgs::image_cache_mb, 0, 1 << 24);
  t.integer("--token-budget", "tokens per engine step (prefill chunk size); >= --max-running",
            &ServerArgs::token_budget, 1, 1 << 20);
  t.integer(
      "--image-budget",
      "images encoded per engine step at most (a request's images stay together); 0 = no limit",
      &ServerArgs::image_budget, 0, 1 << 20);
  t.toggle("--no-prefix-caching", "do not share KV blocks of common prompt prefixes",
           &ServerArgs::prefix_caching, false);
  t.integer("--load-delay-ms",
            "wait this long before loading the model (tests of the loading state)",
            &ServerArgs::load_delay_ms, 0, 600000);
  t.integer("--http-port",
            "OpenAI-compatible HTTP API port (/v1/chat/completions ...); 0 turns it off",
            &ServerArgs::http_port, 0, 65535);
  t.text("--http-host", "address of the HTTP API; default: --host", &ServerArgs::http_host);
  t.integer("--http-threads",
            "HTTP connections served at once (a thread each, started on demand; more wait)",
            &ServerArgs::http_threads, 1, 65536);
  t.integer("--http-keep-alive",
            "seconds an idle HTTP keep-alive connection stays open (also bounds the wait for them "
            "at shutdown)",
            &ServerArgs::http_keep_alive_s, 1, 3600);
  t.text("--served-model-name", "the model id of the HTTP API; default: the model folder's name",
         &ServerArgs::served_model_name);
  t.text("--chat-template",
         "chat template (JSON, server/chat_template.h); default: "
         "<model>/flamingo_chat_template.json, else the family's bundled one",
         &ServerArgs::chat_template_path);
  t.text("--allowed-local-media-path",
         "folder whose files HTTP requests may name as file:// images",
         &ServerArgs::allowed_local_media_path);
  t.toggle("--allow-image-urls",
           "fetch http(s):// image URLs of HTTP requests (size, time and redirect limits)",
           &ServerArgs::allow_image_urls);
  t.toggle("--allow-private-image-urls",
           "also fetch image URLs whose host is a private, loopback or link-local address",
           &ServerArgs::allow_private_image_urls);
  t.number("--image-url-timeout", "seconds one image URL may take to fetch, redirects included",
           &ServerArgs::image_url_timeout_s, 0.1, 3600);
  t.integer("--image-url-max-redirects", "redirects one image URL may take",
            &ServerArgs::image_url_max_redirects, 0, 20);
  t.integer("--max-choices", "largest n (choices) of an HTTP request", &ServerArgs::max_choices, 1,
            128);
  t.text("--api-key-file",
         "API keys, one a line (also FLAMINGO_API_KEY): gRPC calls and /v1/ HTTP requests must "
         "send 'authorization: Bearer KEY'; health and /metrics stay open",
         &ServerArgs::api_key_file);
  t.toggle("--no-reflection", "do not serve gRPC server reflection", &ServerArgs::reflection,
           false);
  t.text("--tls-cert", "PEM certificate (chain): gRPC and HTTP serve TLS (with --tls-key)",
         &ServerArgs::tls_cert);
  t.text("--tls-key", "PEM private key of --tls-cert", &ServerArgs::tls_key);
  t.text("--tls-client-ca",
         "PEM CA certificates: clients must present a certificate they signed (mutual TLS)",
         &ServerArgs::tls_client_ca);
  // The request limits (ServerLimits).
  const auto L = [](auto field) { return nested(&ServerArgs::limits, field); };
  t.integer("--max-images", "images per request", L(&ServerLimits::max_images_per_request), 0,
            4096);
  flags::add_image_limit_flags(t, L(&ServerLimits::max_image_bytes),
                               L(&ServerLimits::max_image_pixels));
  t.integer("--max-prompt-tokens", "prompt tokens per request; 0 = the context length",
            L(&ServerLimits::max_prompt_tokens), 0, kI32);
  t.integer("--max-new-tokens", "largest max_new_tokens a request may ask for",
            L(&ServerLimits::max_new_tokens), 1, kI32);
  t.integer("--default-max-new-tokens", "max_new_tokens of a request that sends 0",
            L(&ServerLimits::default_max_new_tokens), 1, kI32);
  t.integer("--max-stop-strings", "stop strings per request", L(&ServerLimits::max_stop_strings), 0,
            1024);
  t.integer("--max-stop-string-bytes", "bytes per stop string",
            L(&ServerLimits::max_stop_string_bytes), 1, 65536);
  t.integer("--max-top-logprobs", "largest top_logprobs", L(&ServerLimits::max_top_logprobs), 0,
            1000);
  t.integer("--max-candidates", "candidates per Score request", L(&ServerLimits::max_candidates), 1,
            65536);
  t.integer("--max-text-bytes", "bytes of text per request", L(&ServerLimits::max_text_bytes), 1,
            1 << 30);
  t.integer("--max-queued", "requests waiting for a slot; beyond: RESOURCE_EXHAUSTED",
            L(&ServerLimits::max_queued_requests), 0, 1 << 20);
  t.integer("--max-running", "requests in the running batch",
            L(&ServerLimits::max_running_requests), 1, 4096);
  t.text("--clip-model",
         "a CLIP checkpoint (HF CLIPModel folder) served beside --model: Embed and Classify",
         &ServerArgs::clip_model_dir)
      .meta("DIR");
  t.integer("--clip-cache-mb",
            "CLIP image embeddings cached (an image embedded twice is computed once)",
            &ServerArgs::clip_cache_mb, 1, 1 << 20);
  t.integer("--max-embed-images", "images per Embed request (CLIP)",
            L(&ServerLimits::max_embed_images), 0, 65536);
  t.integer("--max-embed-texts", "texts per Embed request (CLIP)",
            L(&ServerLimits::max_embed_texts), 0, 65536);
  t.integer("--max-embed-text-bytes",
            "bytes of one CLIP text or label (longer than 77 tokens is cut; longer than this is "
            "refused)",
            L(&ServerLimits::max_embed_text_bytes), 1, 1 << 30);
  t.integer("--max-labels", "labels per Classify request (CLIP)", L(&ServerLimits::max_labels), 1,
            1 << 20);
  t.help_flag(&ServerArgs::help);
  return t;
}

const Table& table() {
  static const Table kTable = make_table();
  return kTable;
}

}  // namespace

ServerArgs parse_server_args(const std::vector<std::string>& argv) {
  ServerArgs args;
  table().parse(argv, 0, args, {}, [](const std::string& arg) {
    return "unknown argument '" + arg + "' (see --help)";
  });
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
  if (const std::string e = flags::tls_pair_error(args.tls_cert, args.tls_key); !e.empty()) {
    throw ServerUsageError(e);
  }
  if (!args.tls_client_ca.empty() && args.tls_cert.empty()) {
    throw ServerUsageError("--tls-client-ca needs --tls-cert and --tls-key");
  }
  return args;
}

std::string server_usage() {
  return "usage: flamingo-server [flags]\n"
         "Serves an IDEFICS checkpoint over gRPC (service flamingo.v1.Flamingo, plus\n"
         "grpc.health.v1.Health and server reflection) and over the OpenAI-compatible HTTP API\n"
         "(/v1/chat/completions, /v1/completions, /v1/models on --http-port).\n"
         "SIGTERM/SIGINT drain and exit 0.\n\n"
         "flags (--name VALUE or --name=VALUE; default in brackets):\n" +
         table().help(ServerArgs{});
}

std::vector<std::string> describe_server_args(const ServerArgs& args) {
  return table().describe(args);
}

}  // namespace flamingo
