#include "cli/cli_args.h"

#include <charconv>
#include <cmath>
#include <set>
#include <sstream>
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

// --tls-cert and --tls-key come together; any --tls flag turns TLS on.
void check_tls_flags(CliArgs& a) {
  if (a.tls_cert.empty() != a.tls_key.empty()) {
    throw UsageError(a.tls_cert.empty() ? "--tls-key needs --tls-cert"
                                        : "--tls-cert needs --tls-key");
  }
  a.tls = a.tls || !a.tls_ca.empty() || !a.tls_cert.empty();
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
  flamingo-cli generate --server HOST:PORT --prompt TEXT [--image PATH]... [--stream] [options]
  flamingo-cli score    --server HOST:PORT --prompt TEXT [--image PATH]... --candidate TEXT... --json
  flamingo-cli caption  --server HOST:PORT --image PATH [--example IMAGE=TEXT]... [options]
  flamingo-cli ask      --server HOST:PORT --image PATH --question TEXT
                        [--example IMAGE=QUESTION=ANSWER]... [options]
  flamingo-cli info     --server HOST:PORT [--timeout SECONDS]   (GetModelInfo, as JSON)
  flamingo-cli quantize --model DIR --out DIR [--threads N]
                        write an int8 copy of the checkpoint (docs/QUANTIZATION.md): load it
                        with --weights int8 (or auto) without quantizing at every start

In TEXT each "<image>" marks where the next --image goes; nothing else is special.

common options:
  --model DIR              HF-format IDEFICS checkpoint folder (default: the bundled tiny model)
  --image PATH             PNG or JPEG, once per <image> marker, in order
  --dtype auto|float32|bfloat16   compute dtype (auto: bfloat16 if the CPU has avx512_bf16/AMX)
  --weights auto|float32|bfloat16|int8   how linear weights are held (auto: bfloat16 when
                           the compute dtype or the checkpoint is bfloat16, else float32)
  --context-length N       override max_position_embeddings (default: config.json, else 2048)
  --threads N              intra-op threads (default: all cores)
  --max-image-bytes N      reject larger image files (default 20971520)
  --max-image-pixels N     reject images whose header declares more pixels (default 40000000)
  --json                   print one JSON object on stdout
generate options:
  --max-new-tokens N       default 32 (with --server: the server's --default-max-new-tokens)
  --temperature T          0 = greedy (default)
  --top-k K                0 = off
  --top-p P                1 = off
  --repetition-penalty R   1 = off
  --seed S                 sampling seed (default: random, reported in --json output;
                           with --server S must be >= 1)
  --stop STR               stop string (repeatable); </s> and <end_of_utterance> always stop
  --ignore-eos             do not stop at </s> / <end_of_utterance>
  --top-logprobs N         also report the N most likely tokens per step (--json)
score options:
  --candidate TEXT         candidate continuation of the last text (repeatable)

remote mode (a running flamingo-server answers; --model, --dtype, --context-length,
--threads and the --max-image-* flags are the server's and are rejected here):
  --server HOST:PORT       gRPC address of flamingo-server (e.g. 127.0.0.1:50051)
  --timeout SECONDS        deadline for the call (default: none)
  --tls                    connect with TLS, trusting the system's CA certificates
  --tls-ca FILE            connect with TLS, trusting this PEM CA (the one that signed the
                           server's --tls-cert, or that certificate if self-signed)
  --tls-cert FILE, --tls-key FILE
                           client certificate and key (PEM) for a server with --tls-client-ca
  --stream                 generate: print the text as it arrives (GenerateStream);
                           with --json the final aggregate is printed
  --request-id ID          generate: an id the server logs with the request
caption (needs --server): one --image to caption; sampling flags and --max-new-tokens apply
  --example IMAGE=TEXT     few-shot demo: an image file and its caption (repeatable)
ask (needs --server): answer --question about one --image
  --question TEXT          the question
  --example IMAGE=QUESTION=ANSWER
                           few-shot demo (repeatable); split at the first and the last '='
--json output of generate, caption and ask with --server: text, token_ids, logprobs,
finish_reason (length|stop|cancelled), seed, usage {prompt_tokens, completion_tokens, images},
request_id, and top_logprobs when asked; score --server prints candidate_logprobs.

exit codes: 0 ok, 1 error (bad input, checkpoint, image, prompt), 2 usage,
  3 the server answered an error or could not be reached; stderr then reads
  "flamingo-cli: <gRPC STATUS_CODE>: <message>", e.g. "flamingo-cli: UNAVAILABLE: ..."
)";
}

namespace {

// caption: IMAGE=TEXT (split at the first '='); ask: IMAGE=QUESTION=ANSWER (split at the first
// and the last '=', so the question may contain '=').
CliExample parse_example(const std::string& command, const std::string& spec) {
  const std::string form = command == "ask" ? "IMAGE=QUESTION=ANSWER" : "IMAGE=TEXT";
  const size_t first = spec.find('=');
  const size_t last = spec.rfind('=');
  CliExample e;
  if (first == std::string::npos || first == 0 ||
      (command == "ask" && (last == first || last == std::string::npos))) {
    throw UsageError("--example: expected " + form + ", got '" + spec + "'");
  }
  e.image = spec.substr(0, first);
  if (command == "ask") {
    e.question = spec.substr(first + 1, last - first - 1);
    e.answer = spec.substr(last + 1);
  } else {
    e.text = spec.substr(first + 1);
  }
  return e;
}

}  // namespace

CliArgs parse_cli_args(const std::vector<std::string>& argv, const std::string& default_model) {
  CliArgs a;
  a.model_dir = default_model;
  if (argv.empty()) {
    throw UsageError(
        "missing command (generate, score, caption, ask, info or quantize); see --help");
  }
  size_t i = 0;
  if (argv[0] == "-h" || argv[0] == "--help" || argv[0] == "help") {
    a.help = true;
    return a;
  }
  a.command = argv[i++];
  if (a.command != "generate" && a.command != "score" && a.command != "caption" &&
      a.command != "ask" && a.command != "info" && a.command != "quantize") {
    throw UsageError("unknown command '" + a.command +
                     "' (expected generate, score, caption, ask, info or quantize)");
  }
  if (a.command == "quantize") {  // local only: --model, --out, --threads
    bool model_given = false;
    while (i < argv.size()) {
      const std::string flag = argv[i++];
      if (flag == "-h" || flag == "--help") {
        a.help = true;
      } else if ((flag == "--model" || flag == "--out" || flag == "--threads") && i < argv.size()) {
        const std::string v = argv[i++];
        if (flag == "--model") {
          a.model_dir = v;
          model_given = true;
        } else if (flag == "--out") {
          a.out_dir = v;
        } else {
          a.threads = parse_number<int32_t>(flag, v);
        }
      } else {
        throw UsageError("quantize: unknown or incomplete flag '" + flag +
                         "' (quantize takes --model DIR, --out DIR and --threads N)");
      }
    }
    if (!a.help && !model_given) throw UsageError("quantize: --model DIR is required");
    if (!a.help && a.out_dir.empty()) throw UsageError("quantize: --out DIR is required");
    return a;
  }
  if (a.command == "info") {  // GetModelInfo: only --server, --timeout and --json
    while (i < argv.size()) {
      const std::string flag = argv[i++];
      if (flag == "-h" || flag == "--help") {
        a.help = true;
      } else if (flag == "--json") {
        a.json = true;
      } else if (flag == "--tls") {
        a.tls = true;
      } else if ((flag == "--server" || flag == "--timeout" || flag == "--tls-ca" ||
                  flag == "--tls-cert" || flag == "--tls-key") &&
                 i < argv.size()) {
        const std::string v = argv[i++];
        if (flag == "--server") {
          a.server = v;
        } else if (flag == "--timeout") {
          a.timeout_seconds = parse_float(flag, v);
          if (!(a.timeout_seconds > 0)) throw UsageError("--timeout: must be > 0, got '" + v + "'");
        } else {
          (flag == "--tls-ca" ? a.tls_ca : flag == "--tls-cert" ? a.tls_cert : a.tls_key) = v;
        }
      } else {
        throw UsageError("info: unknown or incomplete flag '" + flag +
                         "' (info takes --server HOST:PORT, --timeout SECONDS and the --tls "
                         "flags)");
      }
    }
    if (a.server.empty() && !a.help) throw UsageError("info needs --server HOST:PORT");
    check_tls_flags(a);
    return a;
  }
  auto value = [&](const std::string& flag) -> std::string {
    if (i >= argv.size()) throw UsageError(flag + ": missing value");
    return argv[i++];
  };
  std::set<std::string> given;
  std::vector<std::string> example_specs;
  while (i < argv.size()) {
    const std::string flag = argv[i++];
    given.insert(flag);
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
      a.max_new_tokens = parse_number<int32_t>(flag, value(flag)), a.max_new_tokens_given = true;
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
    else if (flag == "--weights")
      a.weights = value(flag);
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
    else if (flag == "--server")
      a.server = value(flag);
    else if (flag == "--timeout")
      a.timeout_seconds = parse_float(flag, value(flag));
    else if (flag == "--stream")
      a.stream = true;
    else if (flag == "--tls")
      a.tls = true;
    else if (flag == "--tls-ca")
      a.tls_ca = value(flag);
    else if (flag == "--tls-cert")
      a.tls_cert = value(flag);
    else if (flag == "--tls-key")
      a.tls_key = value(flag);
    else if (flag == "--request-id")
      a.request_id = value(flag);
    else if (flag == "--question")
      a.question = value(flag);
    else if (flag == "--example")
      example_specs.push_back(value(flag));
    else
      throw UsageError("unknown option '" + flag + "'");
  }
  if (a.help) return a;
  const bool remote = given.count("--server") > 0;
  if (remote && a.server.empty()) throw UsageError("--server: expected HOST:PORT, got ''");
  if (!remote) {
    if (a.command == "caption" || a.command == "ask") {
      throw UsageError(a.command + ": needs --server HOST:PORT (" + a.command +
                       " runs on a flamingo-server only; locally use generate with --prompt)");
    }
    for (const char* f : {"--timeout", "--stream", "--request-id", "--tls", "--tls-ca",
                          "--tls-cert", "--tls-key"}) {
      if (given.count(f)) throw UsageError(std::string(f) + ": only with --server HOST:PORT");
    }
  } else {
    for (const char* f : {"--model", "--dtype", "--weights", "--context-length", "--threads",
                          "--max-image-bytes", "--max-image-pixels"}) {
      if (given.count(f)) {
        throw UsageError(std::string(f) +
                         ": not used with --server (the server's model and flags decide)");
      }
    }
    check_tls_flags(a);
    if (given.count("--timeout") && !(a.timeout_seconds > 0 && std::isfinite(a.timeout_seconds))) {
      std::ostringstream got;
      got << a.timeout_seconds;
      throw UsageError("--timeout: must be a number of seconds > 0, got " + got.str());
    }
    if (a.seed && *a.seed == 0) {
      throw UsageError(
          "--seed: must be >= 1 with --server (0 asks the server for a random seed), got 0");
    }
    if ((a.stream || !a.request_id.empty()) && a.command != "generate") {
      throw UsageError(std::string(a.stream ? "--stream" : "--request-id") +
                       ": only for the generate command");
    }
  }
  if (a.command == "generate" || a.command == "score") {
    if (!a.prompt_given) throw UsageError("--prompt is required");
    if (!example_specs.empty()) throw UsageError("--example: only for caption and ask");
    if (given.count("--question")) {
      throw UsageError("--question: only for the ask command");
    }
  } else {
    if (a.prompt_given) {
      throw UsageError("--prompt: not used by " + a.command +
                       " (the server builds its prompt from --image" +
                       (a.command == "ask" ? ", --question" : "") + " and --example)");
    }
    if (a.images.size() != 1) {
      throw UsageError(a.command + ": exactly one --image is required, got " +
                       std::to_string(a.images.size()));
    }
    if (a.command == "ask" && a.question.empty()) throw UsageError("ask: --question is required");
    if (a.command == "caption" && given.count("--question")) {
      throw UsageError("--question: only for the ask command");
    }
    for (const char* f : {"--stop", "--ignore-eos", "--top-logprobs", "--candidate"}) {
      if (given.count(f)) {
        throw UsageError(std::string(f) + ": only for " +
                         (std::string(f) == "--candidate" ? "score" : "generate"));
      }
    }
    for (const std::string& spec : example_specs) {
      a.examples.push_back(parse_example(a.command, spec));
    }
  }
  if (a.model_dir.empty() && !remote) throw UsageError("--model is required");
  if (a.dtype != "auto" && a.dtype != "float32" && a.dtype != "bfloat16") {
    throw UsageError("--dtype: expected auto, float32 or bfloat16, got '" + a.dtype + "'");
  }
  if (a.weights != "auto" && a.weights != "float32" && a.weights != "bfloat16" &&
      a.weights != "int8") {
    throw UsageError("--weights: expected auto, float32, bfloat16 or int8, got '" + a.weights +
                     "'");
  }
  if (a.max_new_tokens < 1) {
    throw UsageError("--max-new-tokens: must be >= 1, got " + std::to_string(a.max_new_tokens));
  }
  // The server enforces its own --max-top-logprobs; locally the limit is 20.
  if (a.top_logprobs < 0 || (!remote && a.top_logprobs > 20)) {
    throw UsageError(std::string("--top-logprobs: must be ") + (remote ? ">= 0" : "in [0, 20]") +
                     ", got " + std::to_string(a.top_logprobs));
  }
  if (a.threads < 0) throw UsageError("--threads: must be >= 0, got " + std::to_string(a.threads));
  if (a.context_length < 0) {
    throw UsageError("--context-length: must be >= 1, got " + std::to_string(a.context_length));
  }
  if (a.max_image_bytes < 1 || a.max_image_pixels < 1) {
    throw UsageError("--max-image-bytes/--max-image-pixels: must be >= 1");
  }
  if (a.command == "score" && !a.json) throw UsageError("score: --json is required");
  if (a.command == "score" && remote && a.candidates.empty()) {
    throw UsageError(
        "score --server: at least one --candidate is required (the server returns candidate "
        "log-probabilities only)");
  }
  if (a.command == "generate" && !a.candidates.empty()) {
    throw UsageError("--candidate: only for the score command");
  }
  return a;
}

}  // namespace flamingo::cli
