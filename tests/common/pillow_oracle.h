// Test helper: a scratch directory and a runner for tests/model/pillow_oracle.py, the Pillow
// oracle of the image pipeline tests (run with FLAMINGO_PYTHON3, Debian's python with Pillow).
// Thread-safety: TempDir instances are independent; run_pillow_oracle spawns a process.
#pragma once

#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>

#include "tests/common/process.h"

#ifndef FLAMINGO_PYTHON3
#define FLAMINGO_PYTHON3 "/usr/bin/python3"
#endif

namespace flamingo::testing {

inline std::string pillow_oracle_path() {
#ifdef FLAMINGO_PILLOW_ORACLE
  return FLAMINGO_PILLOW_ORACLE;
#else
  // This header lives in tests/common/; the oracle in tests/model/.
  return (std::filesystem::path(__FILE__).parent_path().parent_path() / "model" /
          "pillow_oracle.py")
      .string();
#endif
}

// Runs `python3 pillow_oracle.py <mode> <dir>`. Returns an empty string on success, otherwise
// the exit status and the oracle's output.
inline std::string run_pillow_oracle(const std::string& mode, const std::filesystem::path& dir) {
  const std::string command = std::string("'") + FLAMINGO_PYTHON3 + "' '" + pillow_oracle_path() +
                              "' " + mode + " '" + dir.string() + "' 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return "cannot run: " + command;
  std::string output;
  std::array<char, 4096> buf{};
  while (std::fgets(buf.data(), buf.size(), pipe) != nullptr) output += buf.data();
  const int status = pclose(pipe);
  if (status != 0) {
    return "oracle failed (status " + std::to_string(status) + "): " + command + "\n" + output;
  }
  return "";
}

}  // namespace flamingo::testing
