// flamingo-bench's command line (bench/model_bench.cpp): the flags, their checks and --help.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <string>
#include <vector>

namespace flamingo::bench {

struct Args {
  std::string model;
  std::vector<at::ScalarType> dtypes = {at::kFloat, at::kBFloat16};
  std::vector<std::string> weights = {"auto"};
  std::vector<int64_t> batches;  // empty: the defaults
  int threads = 0;
  int64_t steps = 10;
  std::string json_path;
  bool quick = false;  // 1 image and a 128-token prefill only (for slow dtypes)
  bool help = false;
  std::string device = "cpu";  // cpu | cuda | auto
  bool dtypes_given = false, weights_given = false;
};

// The --help text.
const char* usage();

// Throws flamingo::Error naming the flag for an unknown flag, a missing or bad value, or a
// missing --model (unless --help).
Args parse_args(int argc, char** argv);

}  // namespace flamingo::bench
