#include "cli/local.h"

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <cmath>
#include <condition_variable>
#include <iostream>
#include <limits>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>

#include "cli/cli_request.h"
#include "model/config.h"
#include "model/error.h"
#include "model/image_preprocess.h"
#include "model/tokenizer.h"
#include "server/engine/collecting_sink.h"
#include "server/engine/engine.h"
#include "server/request_builder.h"

namespace flamingo::cli {
namespace {

using nlohmann::json;

json number_or_null(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

void report_progress(int64_t done, int64_t total) {
  static int last = -1;
  if (total < (256 << 20)) return;  // small checkpoints load in well under a second
  const int pct = static_cast<int>(100 * done / std::max<int64_t>(total, 1));
  if (pct / 10 != last / 10 || done == total) {
    std::cerr << "loading weights: " << pct << "% (" << (done >> 20) << " / " << (total >> 20)
              << " MiB)\n";
    last = pct;
  }
}

// The CLI runs on the user's own machine: only the flags it has limit a request.
ServerLimits cli_limits(const CliArgs& a) {
  ServerLimits l;
  constexpr int32_t kNone = std::numeric_limits<int32_t>::max();
  l.max_images_per_request = kNone;
  l.max_image_bytes = a.max_image_bytes;
  l.max_image_pixels = a.max_image_pixels;
  l.max_new_tokens = kNone;  // the context length still bounds prompt + max_new_tokens
  l.default_max_new_tokens = a.max_new_tokens;
  l.max_stop_strings = kNone;
  l.max_stop_string_bytes = kNone;
  l.max_top_logprobs = 20;  // cli_args enforces the same
  l.max_candidates = 1 << 20;
  l.max_text_bytes = std::numeric_limits<int64_t>::max();
  l.max_queued_requests = 1;
  l.max_running_requests = 1;  // one sequence at a time: KV for one context
  return l;
}

void check_admitted(const AdmissionResult& r) {
  if (r.code != Admission::kAccepted) throw Error(r.message);
}

std::unique_ptr<Engine> start_engine(const CliArgs& a, const ServerLimits& limits) {
  // stdout carries only the result: the engine's warnings and errors go to stderr.
  spdlog::set_default_logger(spdlog::stderr_logger_mt("flamingo-cli"));
  spdlog::set_level(spdlog::level::warn);
  EngineConfig c;
  c.model_dir = a.model_dir;
  c.dtype = a.dtype;
  c.weights = a.weights;
  c.device = a.device;
  c.context_length = a.context_length;
  c.threads = a.threads;
  c.limits = limits;
  c.warm_up = false;  // one request: warming up would only add its own cost
  c.progress = report_progress;
  return Engine::start(c);
}

int generate(const CliArgs& a, const GenerateJob& job, Engine& engine, std::ostream& out) {
  auto sink = std::make_shared<CollectingSink>();
  const std::vector<int32_t> prompt = job.prompt;
  const size_t images = job.images.size();
  check_admitted(engine.submit(GenerateJob(job), sink));
  const JobOutcome& o = sink->wait();
  if (o.status != JobStatus::kStop && o.status != JobStatus::kLength) throw Error(o.message);
  if (!a.json) {
    out << o.text << "\n";
    return 0;
  }
  const ModelDescription& d = engine.description();
  json r;
  r["prompt_token_ids"] = prompt;
  r["token_ids"] = o.token_ids;
  r["text"] = o.text;
  json lp = json::array();
  for (float v : sink->logprobs) lp.push_back(number_or_null(v));
  r["logprobs"] = lp;
  r["finish_reason"] = job_status_name(o.status);
  r["seed"] = o.seed;
  r["dtype"] = d.dtype;
  r["weights"] = d.weights;
  r["device"] = d.device;
  r["usage"] = {{"prompt_tokens", o.prompt_tokens},
                {"completion_tokens", o.completion_tokens},
                {"images", images}};
  if (a.top_logprobs > 0) {
    json top = json::array();
    for (const auto& step : sink->top_logprobs) {
      json s = {{"token_ids", json::array()}, {"logprobs", json::array()}};
      for (const auto& [id, v] : step) {
        s["token_ids"].push_back(id);
        s["logprobs"].push_back(number_or_null(v));
      }
      top.push_back(s);
    }
    r["top_logprobs"] = top;
  }
  out << r.dump() << "\n";
  return 0;
}

int score(const CliArgs& a, const ScoreJob& job, Engine& engine, std::ostream& out) {
  std::mutex mu;
  std::condition_variable cv;
  std::optional<ScoreOutcome> got;
  const std::vector<int32_t> prompt = job.sequences[0];
  check_admitted(engine.submit_score(ScoreJob(job), [&](ScoreOutcome o) {
    std::lock_guard lock(mu);
    got = std::move(o);
    cv.notify_all();
  }));
  std::unique_lock lock(mu);
  cv.wait(lock, [&] { return got.has_value(); });
  if (got->status != JobStatus::kStop) throw Error(got->message);
  json r;
  r["prompt_token_ids"] = prompt;
  json lp = json::array();
  for (double v : got->prompt_logprobs) lp.push_back(number_or_null(v));
  r["token_logprobs"] = lp;
  if (!a.candidates.empty()) {
    json c = json::array();
    for (double v : got->logprobs) c.push_back(number_or_null(v));
    r["candidate_logprobs"] = c;
  }
  out << r.dump() << "\n";
  return 0;
}

}  // namespace

int run_local(const CliArgs& a, std::ostream& out) {
  // The request first, from the checkpoint's small files: a bad input fails before the
  // weights load.
  const CliPrompt prompt(a);
  const ModelConfig config = load_model_config(a.model_dir);
  const std::unique_ptr<Tokenizer> tokenizer = Tokenizer::load(a.model_dir);
  const ImagePreprocessConfig image_config =
      load_preprocess_config(a.model_dir, static_cast<int>(config.vision.image_size));
  const int64_t context = config.context_length(a.context_length);
  const ServerLimits limits = cli_limits(a);
  const RequestBuilder builder(*tokenizer, image_config, limits, context, config.total_vocab(),
                               PromptTemplates::idefics());
  std::optional<GenerateJob> gen;
  std::optional<ScoreJob> sc;
  try {
    if (a.command == "score") {
      ScoreInput in;
      in.prompt = prompt.parts();
      for (const std::string& c : a.candidates) in.candidates.push_back(c);
      in.candidates_required = false;
      in.prompt_logprobs = true;
      sc = builder.build_score(in);
    } else {
      GenerateInput in;
      in.prompt = prompt.parts();
      in.max_new_tokens = a.max_new_tokens;
      in.sampling = {a.temperature, a.top_p, a.top_k, a.repetition_penalty, a.seed.value_or(0)};
      for (const std::string& s : a.stop) in.stop.push_back(s);
      in.ignore_eos = a.ignore_eos;
      in.top_logprobs = a.top_logprobs;
      gen = builder.build_generate(in);
    }
  } catch (const InvalidRequest& e) {
    const std::string flag = prompt.flag_of(e.field());
    throw Error(flag.empty() ? e.what() : flag + ": " + e.what());
  }
  const std::unique_ptr<Engine> engine = start_engine(a, limits);
  return sc ? score(a, *sc, *engine, out) : generate(a, *gen, *engine, out);
}

}  // namespace flamingo::cli
