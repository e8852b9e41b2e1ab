// Command line of flamingo-cli (a contract other tools rely on: extend, never rename):
//   flamingo-cli generate --model DIR --prompt TEXT [--image PATH]... [--max-new-tokens N]
//       [--temperature T] [--top-k K] [--top-p P] [--repetition-penalty R] [--seed S]
//       [--dtype auto|float32|bfloat16] [--json] [--stop STR]... [--ignore-eos]
//       [--top-logprobs N] [--context-length N] [--threads N]
//       [--max-image-bytes N] [--max-image-pixels N]
//   flamingo-cli score --model DIR --prompt TEXT [--image PATH]... [--candidate TEXT]...
//       [--dtype ...] --json
// Torch-free so that it is unit-testable without a model.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace flamingo::cli {

struct CliArgs {
  std::string command;  // generate | score
  std::string model_dir;
  std::string prompt;
  bool prompt_given = false;
  std::vector<std::string> images;
  std::vector<std::string> candidates;
  std::vector<std::string> stop;
  int32_t max_new_tokens = 32;
  float temperature = 0.f;
  int32_t top_k = 0;
  float top_p = 1.f;
  float repetition_penalty = 1.f;
  std::optional<uint64_t> seed;
  std::string dtype = "auto";
  bool json = false;
  bool ignore_eos = false;
  int32_t top_logprobs = 0;
  int64_t context_length = 0;
  int32_t threads = 0;
  int64_t max_image_bytes = 20 << 20;
  int64_t max_image_pixels = 40'000'000;
  bool help = false;
};

// Throws UsageError (message names the flag and the bad value).
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

CliArgs parse_cli_args(const std::vector<std::string>& argv, const std::string& default_model);
std::string cli_usage();

}  // namespace flamingo::cli
