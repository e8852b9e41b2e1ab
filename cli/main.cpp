// flamingo-cli: one-shot generation and scoring with an IDEFICS checkpoint through the
// server's engine in this process (cli/local.h; see cli_args.h for the command line), or,
// with --server HOST:PORT, the same commands plus caption and ask sent to a running
// flamingo-server (cli/remote.h). stdout carries only the result (JSON with
// --json); progress and errors go to stderr. Exit codes: 0 ok, 1 runtime error (bad
// checkpoint, image, prompt), 2 usage, 3 gRPC error (--server only).
#include <ATen/Parallel.h>

#include <chrono>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/cli_args.h"
#include "cli/local.h"
#ifndef FLAMINGO_CLI_NO_REMOTE  // defined when built without gRPC (FLAMINGO_BUILD_SERVER=OFF)
#include "cli/remote.h"
#endif
#include "model/error.h"
#include "model/flamingo.h"
#include "model/install_paths.h"
#include "model/int8_checkpoint.h"

#ifndef FLAMINGO_DEFAULT_MODEL
#define FLAMINGO_DEFAULT_MODEL ""
#endif

namespace flamingo::cli {
namespace {

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
  return run_local(a, std::cout);
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
