// flamingo-cli: one-shot generation and scoring with an IDEFICS checkpoint (see cli_args.h for
// the command line), or, with --server HOST:PORT, the same commands plus caption and ask sent
// to a running flamingo-server (cli/remote.h). stdout carries only the result (JSON with
// --json); progress and errors go to stderr. Exit codes: 0 ok, 1 runtime error (bad
// checkpoint, image, prompt), 2 usage, 3 gRPC error (--server only).
#include <ATen/Parallel.h>

#include <chrono>
#include <cmath>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "cli/cli_args.h"
#ifndef FLAMINGO_CLI_NO_REMOTE  // defined when built without gRPC (FLAMINGO_BUILD_SERVER=OFF)
#include "cli/remote.h"
#endif
#include "model/error.h"
#include "model/install_paths.h"
#include "model/int8_checkpoint.h"
#include "model/pipeline.h"

#ifndef FLAMINGO_DEFAULT_MODEL
#define FLAMINGO_DEFAULT_MODEL ""
#endif

namespace flamingo::cli {
namespace {

nlohmann::json number_or_null(double v) {
  return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr);
}

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

int run_quantize(const CliArgs& a) {
  FlamingoModel::set_threads(a.threads);
  const auto t0 = std::chrono::steady_clock::now();
  const QuantizeSummary s = write_int8_checkpoint(a.model_dir, a.out_dir, [](int64_t d, int64_t t) {
    static int last = -1;
    if (t < (256 << 20)) return;  // small checkpoints take well under a second
    const int pct = static_cast<int>(100 * d / std::max<int64_t>(t, 1));
    if (pct / 10 != last / 10) {
      std::cerr << "quantizing: " << pct << "% (" << (d >> 20) << " / " << (t >> 20) << " MiB)\n";
      last = pct;
    }
  });
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  nlohmann::json out = {{"out", a.out_dir},         {"weights_quantized", s.weights_quantized},
                        {"shards", s.shards},       {"bytes_in", s.bytes_in},
                        {"bytes_out", s.bytes_out}, {"seconds", secs}};
  std::cout << out.dump() << "\n";
  return 0;
}

int run(const CliArgs& a) {
  if (a.command == "quantize") return run_quantize(a);
  FlamingoModel::set_threads(a.threads);
  PipelineOptions po;
  po.model.dtype = a.dtype;
  po.model.weights = a.weights;
  po.model.context_length = a.context_length;
  po.model.progress = report_progress;
  po.image_limits.max_bytes = static_cast<size_t>(a.max_image_bytes);
  po.image_limits.max_pixels = a.max_image_pixels;
  // Images first: a bad image fails fast, before a large checkpoint is loaded.
  std::vector<RgbImage> images;
  for (const std::string& path : a.images) {
    images.push_back(read_image_file(path, po.image_limits));
  }
  std::vector<PromptItem> items = split_image_markers(a.prompt);
  size_t markers = 0;
  for (const auto& it : items) markers += it.kind == PromptItem::Kind::kImage;
  if (markers != images.size()) {
    throw Error("--prompt has " + std::to_string(markers) + " <image> marker(s) but " +
                std::to_string(images.size()) + " --image file(s) were given");
  }
  std::unique_ptr<Pipeline> p = Pipeline::load(a.model_dir, po);
  nlohmann::json out;
  if (a.command == "score") {
    ScoreResult r = p->score(items, images, a.candidates);
    out["prompt_token_ids"] = r.prompt_ids;
    nlohmann::json lp = nlohmann::json::array();
    for (double v : r.token_logprobs) lp.push_back(number_or_null(v));
    out["token_logprobs"] = lp;
    if (!a.candidates.empty()) {
      nlohmann::json c = nlohmann::json::array();
      for (double v : r.candidate_logprobs) c.push_back(number_or_null(v));
      out["candidate_logprobs"] = c;
    }
    std::cout << out.dump() << "\n";
    return 0;
  }
  PreparedPrompt prompt = p->prepare(items, images);
  GenerationOptions go = p->generation_defaults();
  go.max_new_tokens = a.max_new_tokens;
  go.sampling.temperature = a.temperature;
  go.sampling.top_k = a.top_k;
  go.sampling.top_p = a.top_p;
  go.sampling.repetition_penalty = a.repetition_penalty;
  go.sampling.seed = a.seed ? *a.seed : std::random_device{}();
  go.ignore_eos = a.ignore_eos;
  go.top_logprobs = a.top_logprobs;
  for (const auto& s : a.stop) {
    if (s.empty()) throw Error("--stop: empty stop string");
    go.stop.push_back(s);
  }
  GenerationResult r = p->generate(prompt, go);
  if (!a.json) {
    std::cout << r.text << "\n";
    return 0;
  }
  out["prompt_token_ids"] = prompt.ids;
  out["token_ids"] = r.token_ids;
  out["text"] = r.text;
  out["logprobs"] = r.logprobs;
  out["finish_reason"] = r.finish_reason;
  out["seed"] = go.sampling.seed;
  out["dtype"] = p->model().dtype() == at::kBFloat16 ? "bfloat16" : "float32";
  out["weights"] = kernels::weight_type_name(p->model().weight_type());
  out["usage"] = {{"prompt_tokens", prompt.ids.size()},
                  {"completion_tokens", r.token_ids.size()},
                  {"images", images.size()}};
  if (a.top_logprobs > 0) {
    nlohmann::json top = nlohmann::json::array();
    for (const auto& step : r.top_logprobs) {
      nlohmann::json s = {{"token_ids", nlohmann::json::array()},
                          {"logprobs", nlohmann::json::array()}};
      for (const auto& [id, lp] : step) {
        s["token_ids"].push_back(id);
        s["logprobs"].push_back(lp);
      }
      top.push_back(s);
    }
    out["top_logprobs"] = top;
  }
  std::cout << out.dump() << "\n";
  return 0;
}

}  // namespace
}  // namespace flamingo::cli

int main(int argc, char** argv) {
  using namespace flamingo::cli;
  CliArgs args;
  try {
    args = parse_cli_args(std::vector<std::string>(argv + 1, argv + argc),
                          flamingo::bundled_model_dir(FLAMINGO_DEFAULT_MODEL));
  } catch (const UsageError& e) {
    std::cerr << "flamingo-cli: " << e.what() << "\n" << cli_usage();
    return 2;
  }
  if (args.help) {
    std::cout << cli_usage() << "\nthe bundled model here (default --model): "
              << flamingo::bundled_model_dir(FLAMINGO_DEFAULT_MODEL) << "\n";
    return 0;
  }
  if (!args.server.empty()) {
#ifndef FLAMINGO_CLI_NO_REMOTE
    return run_remote(args, std::cout, std::cerr);
#else
    std::cerr << "flamingo-cli: error: --server: this flamingo-cli was built without gRPC "
                 "(FLAMINGO_BUILD_SERVER=OFF)\n";
    return 1;
#endif
  }
  try {
    return run(args);
  } catch (const flamingo::Error& e) {
    std::cerr << "flamingo-cli: error: " << e.what() << "\n";
  } catch (const c10::Error& e) {
    std::cerr << "flamingo-cli: error: " << e.what_without_backtrace() << "\n";
  } catch (const std::exception& e) {
    std::cerr << "flamingo-cli: error: " << e.what() << "\n";
  }
  return 1;
}
