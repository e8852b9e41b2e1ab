#include "cli/cli_args.h"

#include <charconv>
#include <cmath>
#include <stdexcept>

namespace flamingo::cli {
namespace {

template <typename T>
T parse_number(const std::string& flag, const std::string& value) {
  T out{};
  const char* end = value.data() + value.size();
  auto [ptr, ec] = std::from_chars(value.data(), end, out);
  if (ec != std::errc() || ptr != end) {
    throw UsageError(flag + ": expected a number, got '" + value + "'");
  }
  return out;
}

float parse_float(const std::string& flag, const std::string& value) {
  try {
    size_t used = 0;
    float f = std::stof(value, &used);
    if (used != value.size() || std::isnan(f)) throw std::invalid_argument(value);
    return f;
  } catch (const std::exception&) {
    throw UsageError(flag + ": expected a number, got '" + value + "'");
  }
}

}  // namespace

std::string cli_usage() {
  return R"(usage:
  flamingo-cli generate --model DIR --prompt TEXT [--image PATH]... [options]
  flamingo-cli score    --model DIR --prompt TEXT [--image PATH]... [--candidate TEXT]... --json

In TEXT each "<image>" marks where the next --image goes; nothing else is special.

common options:
  --model DIR              HF-format IDEFICS checkpoint folder (default: the bundled tiny model)
  --image PATH             PNG or JPEG, once per <image> marker, in order
  --dtype auto|float32|bfloat16   compute dtype (auto: bfloat16 if the CPU has avx512_bf16/AMX)
  --context-length N       override max_position_embeddings (default: config.json, else 2048)
  --threads N              intra-op threads (default: all cores)
  --max-image-bytes N      reject larger image files (default 20971520)
  --max-image-pixels N     reject images whose header declares more pixels (default 40000000)
  --json                   print one JSON object on stdout
generate options:
  --max-new-tokens N       default 32
  --temperature T          0 = greedy (default)
  --top-k K                0 = off
  --top-p P                1 = off
  --repetition-penalty R   1 = off
  --seed S                 sampling seed (default: random, reported in --json output)
  --stop STR               stop string (repeatable); </s> and <end_of_utterance> always stop
  --ignore-eos             do not stop at </s> / <end_of_utterance>
  --top-logprobs N         also report the N most likely tokens per step (--json)
score options:
  --candidate TEXT         candidate continuation of the last text (repeatable)
)";
}

CliArgs parse_cli_args(const std::vector<std::string>& argv, const std::string& default_model) {
  CliArgs a;
  a.model_dir = default_model;
  if (argv.empty()) throw UsageError("missing command (generate or score); see --help");
  size_t i = 0;
  if (argv[0] == "-h" || argv[0] == "--help" || argv[0] == "help") {
    a.help = true;
    return a;
  }
  a.command = argv[i++];
  if (a.command != "generate" && a.command != "score") {
    throw UsageError("unknown command '" + a.command + "' (expected generate or score)");
  }
  auto value = [&](const std::string& flag) -> std::string {
    if (i >= argv.size()) throw UsageError(flag + ": missing value");
    return argv[i++];
  };
  while (i < argv.size()) {
    const std::string flag = argv[i++];
    if (flag == "-h" || flag == "--help")
      a.help = true;
    else if (flag == "--model")
      a.model_dir = value(flag);
    else if (flag == "--prompt")
      a.prompt = value(flag), a.prompt_given = true;
    else if (flag == "--image")
      a.images.push_back(value(flag));
    else if (flag == "--candidate")
      a.candidates.push_back(value(flag));
    else if (flag == "--stop")
      a.stop.push_back(value(flag));
    else if (flag == "--max-new-tokens")
      a.max_new_tokens = parse_number<int32_t>(flag, value(flag));
    else if (flag == "--temperature")
      a.temperature = parse_float(flag, value(flag));
    else if (flag == "--top-k")
      a.top_k = parse_number<int32_t>(flag, value(flag));
    else if (flag == "--top-p")
      a.top_p = parse_float(flag, value(flag));
    else if (flag == "--repetition-penalty")
      a.repetition_penalty = parse_float(flag, value(flag));
    else if (flag == "--seed")
      a.seed = parse_number<uint64_t>(flag, value(flag));
    else if (flag == "--dtype")
      a.dtype = value(flag);
    else if (flag == "--json")
      a.json = true;
    else if (flag == "--ignore-eos")
      a.ignore_eos = true;
    else if (flag == "--top-logprobs")
      a.top_logprobs = parse_number<int32_t>(flag, value(flag));
    else if (flag == "--context-length")
      a.context_length = parse_number<int64_t>(flag, value(flag));
    else if (flag == "--threads")
      a.threads = parse_number<int32_t>(flag, value(flag));
    else if (flag == "--max-image-bytes")
      a.max_image_bytes = parse_number<int64_t>(flag, value(flag));
    else if (flag == "--max-image-pixels")
      a.max_image_pixels = parse_number<int64_t>(flag, value(flag));
    else
      throw UsageError("unknown option '" + flag + "'");
  }
  if (a.help) return a;
  if (!a.prompt_given) throw UsageError("--prompt is required");
  if (a.model_dir.empty()) throw UsageError("--model is required");
  if (a.dtype != "auto" && a.dtype != "float32" && a.dtype != "bfloat16") {
    throw UsageError("--dtype: expected auto, float32 or bfloat16, got '" + a.dtype + "'");
  }
  if (a.max_new_tokens < 1) {
    throw UsageError("--max-new-tokens: must be >= 1, got " + std::to_string(a.max_new_tokens));
  }
  if (a.top_logprobs < 0 || a.top_logprobs > 20) {
    throw UsageError("--top-logprobs: must be in [0, 20], got " + std::to_string(a.top_logprobs));
  }
  if (a.threads < 0) throw UsageError("--threads: must be >= 0, got " + std::to_string(a.threads));
  if (a.context_length < 0) {
    throw UsageError("--context-length: must be >= 1, got " + std::to_string(a.context_length));
  }
  if (a.max_image_bytes < 1 || a.max_image_pixels < 1) {
    throw UsageError("--max-image-bytes/--max-image-pixels: must be >= 1");
  }
  if (a.command == "score" && !a.json) throw UsageError("score: --json is required");
  if (a.command == "generate" && !a.candidates.empty()) {
    throw UsageError("--candidate: only for the score command");
  }
  return a;
}

}  // namespace flamingo::cli
