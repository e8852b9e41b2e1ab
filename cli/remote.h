// flamingo-cli's remote mode: generate, score, caption and ask sent to a running
// flamingo-server over gRPC (--server HOST:PORT) instead of running the model here. Maps the
// parsed command line (cli_args.h) to the flamingo.v1 requests and prints the answer the way
// the local mode does (plain text, or one JSON object with --json).
// Torch-free; this header is also gRPC-free (gRPC stays inside remote.cpp). run_remote has no
// shared state: calls from several threads are independent.
#pragma once

#include <ostream>

#include "cli/cli_args.h"

namespace flamingo::cli {

// flamingo-cli's exit codes (main.cpp uses the same).
inline constexpr int kExitOk = 0;
inline constexpr int kExitError = 1;  // bad input found here (unreadable image, marker count)
inline constexpr int kExitUsage = 2;
inline constexpr int kExitRpc = 3;  // the call failed with a gRPC status (server or transport)

// Runs args.command against the server at args.server (args must come from parse_cli_args
// with --server given). Writes the result to `out` and one error line to `err`:
//   "flamingo-cli: error: <message>"            (kExitError)
//   "flamingo-cli: <STATUS_CODE_NAME>: <message>" (kExitRpc), e.g. "flamingo-cli: UNAVAILABLE: ..."
// With args.stream the generated text is written to `out` (and flushed) as it arrives.
int run_remote(const CliArgs& args, std::ostream& out, std::ostream& err);

}  // namespace flamingo::cli
