#include "cli/cli_args.h"

#include <cmath>
#include <limits>
#include <sstream>

#include "util/flag_table.h"
#include "util/model_flags.h"

namespace flamingo::cli {
namespace {

using Table = flags::FlagTable<CliArgs, UsageError>;
using Flag = Table::FlagT;

// Flag tags: the commands that accept a flag, and whether it is for one mode only.
enum : uint32_t {
  kGenerate = 1 << 0,
  kScore = 1 << 1,
  kCaption = 1 << 2,
  kAsk = 1 << 3,
  kInfo = 1 << 4,
  kQuantize = 1 << 5,
  kLocalOnly = 1 << 6,   // refused with --server (the server's model and flags decide)
  kRemoteOnly = 1 << 7,  // only with --server
};
constexpr uint32_t kGenScore = kGenerate | kScore;
constexpr uint32_t kModelCommands = kGenerate | kScore | kCaption | kAsk;
constexpr uint32_t kAllCommands = kModelCommands | kInfo | kQuantize;

struct Command {
  const char* name;
  uint32_t bit;
};
constexpr Command kCommands[] = {{"generate", kGenerate}, {"score", kScore},
                                 {"caption", kCaption},   {"ask", kAsk},
                                 {"info", kInfo},         {"quantize", kQuantize}};

// --help sections.
enum Section { kCommon, kGenerateSection, kScoreSection, kRemoteSection, kExampleSection, kOut };

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

flags::FlagStyle cli_style() {
  flags::FlagStyle s;
  s.pipe_choices = false;  // "expected auto, float32 or bfloat16"
  s.column = 27;
  s.width = 98;
  s.empty_default = "";
  s.default_open = " (default: ";
  s.default_close = ")";
  return s;
}

Table make_table() {
  Table t(cli_style());
  constexpr uint32_t kMain = kModelCommands;
  constexpr int32_t kI32 = std::numeric_limits<int32_t>::max();
  t.next_flags(kCommon, kGenScore);
  t.text("--prompt", "the prompt; each \"<image>\" in it marks where the next --image goes",
         &CliArgs::prompt)
      .meta("TEXT");
  t.repeated("--image", "PNG or JPEG, once per <image> marker, in order", &CliArgs::images)
      .meta("PATH")
      .with_tags(kMain);
  t.next_flags(kCommon, kGenScore | kLocalOnly);
  flags::add_model_flags(t);  // the same flags as flamingo-server's
  t.at("--model").tags |= kQuantize;
  t.at("--threads").tags |= kQuantize;
  flags::add_image_limit_flags(t, &CliArgs::max_image_bytes, &CliArgs::max_image_pixels);
  t.next_flags(kCommon, kMain | kInfo);
  t.toggle("--json", "print one JSON object on stdout", &CliArgs::json);
  t.help_flag(&CliArgs::help).with_tags(kAllCommands);

  t.next_flags(kGenerateSection, kMain);  // the sampling flags also apply to caption and ask
  t.integer("--max-new-tokens",
            "most tokens to generate; with --server, unset means the server's "
            "--default-max-new-tokens",
            &CliArgs::max_new_tokens, 1, kI32);
  t.number("--temperature", "0 = greedy", &CliArgs::temperature).meta("T");
  t.integer("--top-k", "0 = off", &CliArgs::top_k).meta("K");
  t.number("--top-p", "1 = off", &CliArgs::top_p).meta("P");
  t.number("--repetition-penalty", "1 = off", &CliArgs::repetition_penalty).meta("R");
  t.integer("--seed",
            "sampling seed (default: random, reported in --json output; with --server S must "
            "be >= 1)",
            &CliArgs::seed)
      .meta("S");
  t.next_flags(kGenerateSection, kGenScore);
  t.repeated("--stop", "stop string (repeatable); </s> and <end_of_utterance> always stop",
             &CliArgs::stop)
      .meta("STR");
  t.toggle("--ignore-eos", "do not stop at </s> / <end_of_utterance>", &CliArgs::ignore_eos);
  t.integer("--top-logprobs",
            "also report the N most likely tokens per step (--json); locally at most 20",
            &CliArgs::top_logprobs, 0, kI32);

  t.next_flags(kScoreSection, kScore);
  t.repeated("--candidate", "candidate continuation of the last text (repeatable)",
             &CliArgs::candidates)
      .meta("TEXT");

  t.next_flags(kRemoteSection, kMain | kInfo);
  t.text("--server", "gRPC address of flamingo-server (e.g. 127.0.0.1:50051)", &CliArgs::server)
      .meta("HOST:PORT");
  t.next_flags(kRemoteSection, kMain | kInfo | kRemoteOnly);
  t.number("--timeout", "deadline for the call; 0 = none", &CliArgs::timeout_seconds)
      .meta("SECONDS");
  t.toggle("--tls", "connect with TLS, trusting the system's CA certificates", &CliArgs::tls);
  t.text("--tls-ca",
         "connect with TLS, trusting this PEM CA (the one that signed the server's --tls-cert, "
         "or that certificate if self-signed)",
         &CliArgs::tls_ca)
      .meta("FILE");
  t.text("--tls-cert",
         "client certificate (PEM) for a server with --tls-client-ca (with --tls-key)",
         &CliArgs::tls_cert)
      .meta("FILE");
  t.text("--tls-key", "private key (PEM) of --tls-cert", &CliArgs::tls_key).meta("FILE");
  t.next_flags(kRemoteSection, kGenerate | kRemoteOnly);
  t.toggle("--stream",
           "generate: print the text as it arrives (GenerateStream); with --json the final "
           "aggregate is printed",
           &CliArgs::stream);
  t.text("--request-id", "generate: an id the server logs with the request", &CliArgs::request_id)
      .meta("ID");

  t.next_flags(kExampleSection, kAsk);
  t.text("--question", "ask: the question about the --image", &CliArgs::question).meta("TEXT");
  t.next_flags(kExampleSection, kCaption | kAsk);
  t.custom("--example",
           "few-shot demo (repeatable): caption IMAGE=TEXT, an image file and its caption; ask "
           "IMAGE=QUESTION=ANSWER, split at the first and the last '='",
           [](CliArgs& a, const std::string& spec) {
             // Other commands: refused by the "--example: only for caption and ask" check.
             if (a.command == "caption" || a.command == "ask") {
               a.examples.push_back(parse_example(a.command, spec));
             }
           })
      .meta("IMAGE=TEXT|IMAGE=QUESTION=ANSWER");

  t.next_flags(kOut, kQuantize);
  t.text("--out", "quantize: the folder to write the int8 copy to (new or empty)",
         &CliArgs::out_dir)
      .meta("DIR");
  return t;
}

const Table& table() {
  static const Table kTable = make_table();
  return kTable;
}

// "--a X, --b and --c Y": the flags `keep` lets through, with their value names.
std::string flag_list(const std::function<bool(const Flag&)>& keep, bool metavars) {
  std::vector<std::string> names;
  for (const Flag& f : table().all()) {
    if (f.name == "--help" || !keep(f)) continue;
    names.push_back(f.name + (metavars && f.takes_value ? " " + f.metavar : ""));
  }
  std::string out;
  for (size_t i = 0; i < names.size(); ++i) {
    out += (i == 0 ? "" : i + 1 == names.size() ? " and " : ", ") + names[i];
  }
  return out;
}

// --tls-cert and --tls-key come together; any --tls flag turns TLS on; --timeout > 0.
void check_remote_flags(CliArgs& a, const flags::FlagsGiven& given) {
  if (const std::string e = flags::tls_pair_error(a.tls_cert, a.tls_key); !e.empty()) {
    throw UsageError(e);
  }
  a.tls = a.tls || !a.tls_ca.empty() || !a.tls_cert.empty();
  if (given.has("--timeout") && !(a.timeout_seconds > 0)) {
    std::ostringstream got;
    got << a.timeout_seconds;
    throw UsageError("--timeout: must be a number of seconds > 0, got " + got.str());
  }
}

// The checks of generate, score, caption and ask after their flags parsed.
void check_model_command(CliArgs& a, const flags::FlagsGiven& given, uint32_t command) {
  const bool remote = given.has("--server");
  if (remote && a.server.empty()) throw UsageError("--server: expected HOST:PORT, got ''");
  if (!remote && (a.command == "caption" || a.command == "ask")) {
    throw UsageError(a.command + ": needs --server HOST:PORT (" + a.command +
                     " runs on a flamingo-server only; locally use generate with --prompt)");
  }
  for (const Flag& f : table().all()) {
    if (!given.has(f.name)) continue;
    if (!remote && (f.tags & kRemoteOnly))
      throw UsageError(f.name + ": only with --server HOST:PORT");
    if (remote && (f.tags & kLocalOnly)) {
      throw UsageError(f.name + ": not used with --server (the server's model and flags decide)");
    }
  }
  if (remote) {
    check_remote_flags(a, given);
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
    if (given.has("--example")) throw UsageError("--example: only for caption and ask");
    if (given.has("--question")) throw UsageError("--question: only for the ask command");
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
    if (a.command == "caption" && given.has("--question")) {
      throw UsageError("--question: only for the ask command");
    }
    for (const char* f : {"--stop", "--ignore-eos", "--top-logprobs", "--candidate"}) {
      if (given.has(f)) {
        throw UsageError(std::string(f) + ": only for " +
                         (std::string(f) == "--candidate" ? "score" : "generate"));
      }
    }
  }
  if (a.model_dir.empty() && !remote) throw UsageError("--model is required");
  // The server enforces its own --max-top-logprobs; locally the limit is 20.
  if (!remote && a.top_logprobs > 20) {
    throw UsageError("--top-logprobs: must be in [0, 20], got " + std::to_string(a.top_logprobs));
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
  for (const Flag& f : table().all()) {  // whatever the checks above left to the table's tags
    if (given.has(f.name) && !(f.tags & command)) {
      throw UsageError(f.name + ": not used by " + a.command);
    }
  }
}

// Breaks `text` into lines of at most `width` characters at spaces.
std::string wrap(const std::string& text, size_t width) {
  std::istringstream words(text);
  std::string out, line, w;
  while (words >> w) {
    if (!line.empty() && line.size() + 1 + w.size() > width) out += line + "\n", line.clear();
    line += (line.empty() ? "" : " ") + w;
  }
  return out + line + "\n";
}

}  // namespace

std::string cli_usage() {
  const CliArgs d;
  const auto section = [&](int s) {
    return table().help(d, [s](const Flag& f) { return f.section == s; });
  };
  const std::string local_only =
      flag_list([](const Flag& f) { return (f.tags & kLocalOnly) != 0; }, false);
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
Flags take their value as --name VALUE or --name=VALUE.

common options:
)" + section(kCommon) +
         "generate options (the sampling flags and --max-new-tokens also apply to caption and "
         "ask):\n" +
         section(kGenerateSection) + "score options:\n" + section(kScoreSection) + "\n" +
         wrap("remote mode (a running flamingo-server answers; " + local_only +
                  " are the server's and are rejected here):",
              96) +
         section(kRemoteSection) +
         "caption (needs --server): one --image to caption\n"
         "ask (needs --server): answer --question about one --image\n" +
         section(kExampleSection) + "quantize:\n" + section(kOut) +
         R"(
--json output of generate, caption and ask with --server: text, token_ids, logprobs,
finish_reason (length|stop|cancelled), seed, usage {prompt_tokens, completion_tokens, images},
request_id, and top_logprobs when asked; score --server prints candidate_logprobs.

exit codes: 0 ok, 1 error (bad input, checkpoint, image, prompt), 2 usage,
  3 the server answered an error or could not be reached; stderr then reads
  "flamingo-cli: <gRPC STATUS_CODE>: <message>", e.g. "flamingo-cli: UNAVAILABLE: ..."
)";
}

CliArgs parse_cli_args(const std::vector<std::string>& argv, const std::string& default_model) {
  CliArgs a;
  a.model_dir = default_model;
  if (argv.empty()) {
    throw UsageError(
        "missing command (generate, score, caption, ask, info or quantize); see --help");
  }
  if (argv[0] == "-h" || argv[0] == "--help" || argv[0] == "help") {
    a.help = true;
    return a;
  }
  a.command = argv[0];
  uint32_t command = 0;
  for (const Command& c : kCommands) {
    if (a.command == c.name) command = c.bit;
  }
  if (command == 0) {
    throw UsageError("unknown command '" + a.command +
                     "' (expected generate, score, caption, ask, info or quantize)");
  }
  // generate, score, caption and ask parse each other's flags and refuse them below with a
  // message that says which command they are for; info and quantize take only their own.
  const uint32_t accepted = (command & kModelCommands) ? kModelCommands : command;
  const flags::FlagsGiven given = table().parse(
      argv, 1, a, [accepted](const Flag& f) { return (f.tags & accepted) != 0; },
      [&](const std::string& arg) {
        if (command & kModelCommands) return "unknown option '" + arg + "'";
        return a.command + ": unknown or incomplete flag '" + arg + "' (" + a.command + " takes " +
               flag_list([command](const Flag& f) { return (f.tags & command) != 0; }, true) + ")";
      });
  a.prompt_given = given.has("--prompt");
  a.max_new_tokens_given = given.has("--max-new-tokens");
  if (a.help) return a;
  if (command == kQuantize) {  // local only: --model, --out, --threads
    if (!given.has("--model")) throw UsageError("quantize: --model DIR is required");
    if (a.out_dir.empty()) throw UsageError("quantize: --out DIR is required");
  } else if (command == kInfo) {  // GetModelInfo: --server, --timeout, --json and the --tls flags
    if (a.server.empty()) throw UsageError("info needs --server HOST:PORT");
    check_remote_flags(a, given);
  } else {
    check_model_command(a, given, command);
  }
  return a;
}

}  // namespace flamingo::cli
