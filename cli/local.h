// flamingo-cli's local mode: generate and score run in this process through the same Engine
// and RequestBuilder as flamingo-server (one sequence; no gRPC). The request is built and
// validated (images decoded) before the weights load, so a bad input fails fast; errors name
// the flag (--image PATH, --prompt, --temperature, ...). Output: see cli_args.cpp's usage.
#pragma once

#include <ostream>

#include "cli/cli_args.h"

namespace flamingo::cli {

// Throws flamingo::Error on a bad checkpoint or input; returns the exit code (0).
int run_local(const CliArgs& a, std::ostream& out);

}  // namespace flamingo::cli
