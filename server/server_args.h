// Command line of flamingo-server (a contract: extend, never rename). One table of flags
// drives both parsing and --help, so every limit is documented with its default. Torch-free,
// gRPC-free, unit-testable. Pure functions: thread-safe.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "server/limits.h"

namespace flamingo {

struct ServerArgs {
  std::string model_dir;  // empty: the bundled default model
  std::string host = "127.0.0.1";
  int32_t port = 50051;  // 0: any free port (the bound one is logged)
  std::string dtype = "auto";
  std::string weights = "auto";
  std::string device = "cpu";
  int32_t threads = 0;  // 0: one per core
  std::string log_level = "info";
  std::string metrics_host = "127.0.0.1";
  int32_t metrics_port = 9090;  // 0: off
  double drain_timeout_s = 30;
  std::string templates_path;  // empty: templates/<family>.json next to the binary's share dir
  int64_t context_length = 0;
  int32_t block_size = 16;
  int64_t kv_cache_mb = 0;     // 0: auto
  int64_t image_cache_mb = 0;  // 0: auto
  int32_t token_budget = 512;
  int32_t image_budget = 8;
  bool prefix_caching = true;
  int32_t load_delay_ms = 0;  // wait before loading the model (tests of the loading state)
  // The OpenAI-compatible HTTP API (server/http/openai_server.h).
  int32_t http_port = 8000;               // 0: off
  std::string http_host;                  // empty: --host
  int32_t http_threads = 1024;            // HTTP connections served at once
  int32_t http_keep_alive_s = 2;          // idle keep-alive connections closed after this
  std::string served_model_name;          // empty: the model folder's name
  std::string chat_template_path;         // empty: <model>/flamingo_chat_template.json or bundled
  std::string allowed_local_media_path;   // empty: file:// image URLs refused
  bool allow_image_urls = false;          // http(s) image URLs fetched by the server
  bool allow_private_image_urls = false;  // ... also from private / loopback addresses
  double image_url_timeout_s = 10;
  int32_t image_url_max_redirects = 3;
  int32_t max_choices = 8;        // largest n of a chat/completions request
  std::string api_key_file;       // empty: only FLAMINGO_API_KEY (none: every client let in)
  bool reflection = true;         // gRPC server reflection
  std::string tls_cert, tls_key;  // PEM files; both or neither (TLS on gRPC and HTTP)
  std::string tls_client_ca;      // PEM CA file: clients must present a certificate it signed
  std::string clip_model_dir;     // empty: no CLIP beside --model (a CLIP --model serves alone)
  int64_t clip_cache_mb = 16;     // CLIP image embeddings cached
  ServerLimits limits;
  bool help = false;
};

struct ServerUsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// argv without the program name. Throws ServerUsageError naming the flag, the allowed range
// and the value.
ServerArgs parse_server_args(const std::vector<std::string>& argv);
std::string server_usage();
// One line per setting, "name = value", for the start-up log.
std::vector<std::string> describe_server_args(const ServerArgs& args);

}  // namespace flamingo
