// A helper of the CLI tests: the UsageError message parse_cli_args gives for a command line.
#pragma once

#include <string>
#include <vector>

#include "cli/cli_args.h"

namespace flamingo::cli::cli_testing {

// The message, or "(no usage error)" when the command line parses.
inline std::string usage_error(const std::vector<std::string>& argv) {
  try {
    parse_cli_args(argv, "/m");
  } catch (const UsageError& e) {
    return e.what();
  }
  return "(no usage error)";
}

}  // namespace flamingo::cli::cli_testing
