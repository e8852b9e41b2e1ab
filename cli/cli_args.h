// Command line of flamingo-cli (a contract other tools rely on: extend, never rename):
//   flamingo-cli generate --model DIR --prompt TEXT [--image PATH]... [--max-new-tokens N]
//       [--temperature T] [--top-k K] [--top-p P] [--repetition-penalty R] [--seed S]
//       [--dtype auto|float32|bfloat16] [--weights auto|float32|bfloat16|int8]
//       [--device cpu|cuda|auto] [--json] [--stop STR]... [--ignore-eos]
//       [--top-logprobs N] [--context-length N] [--threads N]
//       [--max-image-bytes N] [--max-image-pixels N]
//   flamingo-cli score --model DIR --prompt TEXT [--image PATH]... [--candidate TEXT]...
//       [--dtype ...] --json
// With --server HOST:PORT the same commands run on a flamingo-server (cli/remote.h), and two
// more exist there only:
//   flamingo-cli caption --server HOST:PORT --image PATH [--example IMAGE=TEXT]...
//       [--max-new-tokens N] [sampling flags] [--json] [--timeout SECONDS]
//   flamingo-cli ask --server HOST:PORT --image PATH --question TEXT
//       [--example IMAGE=QUESTION=ANSWER]... [--max-new-tokens N] [sampling flags] [--json]
//   flamingo-cli info --server HOST:PORT [--timeout SECONDS] [--tls...]   (GetModelInfo as JSON)
//   flamingo-cli quantize --model DIR --out DIR [--threads N]   (local only: an int8 copy)
//   plus, for generate: [--stream] [--request-id ID] [--timeout SECONDS].
// Torch-free and gRPC-free so that it is unit-testable without a model or a server.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace flamingo::cli {

// One few-shot demo of caption (image + text) or ask (image + question + answer).
struct CliExample {
  std::string image;     // file path
  std::string text;      // caption
  std::string question;  // ask
  std::string answer;    // ask
};

struct CliArgs {
  std::string command;  // generate | score | caption | ask | info | quantize
  std::string model_dir;
  std::string out_dir;  // quantize
  std::string prompt;
  bool prompt_given = false;
  std::vector<std::string> images;
  std::vector<std::string> candidates;
  std::vector<std::string> stop;
  int32_t max_new_tokens = 32;
  bool max_new_tokens_given = false;  // with --server, unset means the server's default
  float temperature = 0.f;
  int32_t top_k = 0;
  float top_p = 1.f;
  float repetition_penalty = 1.f;
  std::optional<uint64_t> seed;
  std::string dtype = "auto";
  std::string weights = "auto";  // auto | float32 | bfloat16 | int8
  std::string device = "cpu";    // cpu | cuda | auto: where the text decoder runs
  bool json = false;
  bool ignore_eos = false;
  int32_t top_logprobs = 0;
  int64_t context_length = 0;
  int32_t threads = 0;
  int64_t max_image_bytes = 20 << 20;
  int64_t max_image_pixels = 40'000'000;
  bool help = false;
  // Remote mode (cli/remote.h): empty server = run the model locally.
  std::string server;          // gRPC target, e.g. 127.0.0.1:50051
  double timeout_seconds = 0;  // 0: no deadline
  // TLS to the server: --tls (the system's CAs), --tls-ca FILE (trust this CA), --tls-cert /
  // --tls-key (a client certificate for mutual TLS). Any of them turns TLS on.
  bool tls = false;
  std::string tls_ca, tls_cert, tls_key;
  bool stream = false;               // generate: GenerateStream, text printed as it arrives
  std::string request_id;            // generate: GenerateRequest.request_id
  std::string question;              // ask
  std::vector<CliExample> examples;  // caption / ask few-shot demos, in order
};

// Throws UsageError (message names the flag and the bad value).
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

CliArgs parse_cli_args(const std::vector<std::string>& argv, const std::string& default_model);
std::string cli_usage();

}  // namespace flamingo::cli
