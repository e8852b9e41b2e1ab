// flamingo-bench's command line (model_bench_args.h).
#include "bench/model_bench_args.h"

#include <algorithm>
#include <exception>

#include "model/error.h"
#include "model/flamingo.h"

namespace flamingo::bench {
namespace {

const char kUsage[] =
    R"(usage: flamingo-bench --model DIR [--dtypes LIST] [--weights LIST] [--threads N] [--steps N]
                      [--batches LIST] [--quick] [--json PATH] [--device cpu|cuda|auto]

Times FlamingoModel on this CPU: memory bandwidth and GEMM peak, encode_images (1 and 8
images), prefill (128 and 512 tokens) and decode steps at batch 1..16, 32 and 64, with each
step's weight bandwidth (bytes actually read: weights and int8 scales) against the read
bandwidth measured at the start and again next to each batch size's steps, GFLOP/s, and the
time of the same weight products run alone; for int8 also its accuracy against float32 weights
on the same prompt. Figures go to stdout as a table.

  --model DIR     IDEFICS checkpoint folder (required). The benchmark does not make one:
                  /usr/bin/python3 tools/make_checkpoint.py --preset small --out DIR
                  (~444M parameters; add --dtype bfloat16 for a bf16 checkpoint)
  --dtypes LIST   compute dtypes, comma-separated: float32,bfloat16 (default both)
  --weights LIST  linear weight types, comma-separated: auto,float32,bfloat16,int8 (default
                  auto); one run per dtype and weight type
  --batches LIST  decode batch sizes (default 1..16,32,64; --quick: 1,8,16)
  --threads N     intra-op threads (default: all cores)
  --steps N       timed decode steps per batch size, median reported (default 10)
  --quick         encode 1 image, prefill 128 tokens, 8-token decode context (slow dtypes)
  --json PATH     also write every figure as JSON to PATH
  --device D      cpu (default): the above; cuda: the text decoder on the GPU, as
                  flamingo-server --device cuda runs it (bfloat16): device copy bandwidth, load,
                  prefill of 128 and 512 tokens, decode steps at --batches with weight GB/s
                  against the copy bandwidth (the vision tower stays on the CPU: not timed);
                  auto: cuda when this build has the CUDA kernels and a GPU answers, else cpu
  --help          this text
)";

int64_t parse_int(const std::string& flag, const std::string& text, int64_t min) {
  size_t used = 0;
  int64_t v = -1;
  try {
    v = std::stoll(text, &used);
  } catch (const std::exception&) {
  }
  if (used != text.size() || v < min) {
    throw Error(flag + ": expected an integer >= " + std::to_string(min) + ", found '" + text +
                "'");
  }
  return v;
}

std::vector<std::string> split_list(const std::string& value) {
  std::vector<std::string> out;
  size_t begin = 0;
  while (begin <= value.size()) {
    const size_t end = std::min(value.find(',', begin), value.size());
    out.push_back(value.substr(begin, end - begin));
    begin = end + 1;
  }
  return out;
}

}  // namespace

const char* usage() { return kUsage; }

Args parse_args(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i], value;
    if (flag == "--help" || flag == "-h") {
      a.help = true;
      continue;
    }
    if (flag == "--quick") {
      a.quick = true;
      continue;
    }
    if (flag != "--model" && flag != "--dtypes" && flag != "--threads" && flag != "--steps" &&
        flag != "--json" && flag != "--weights" && flag != "--batches" && flag != "--device") {
      throw Error("unknown argument '" + flag + "' (see --help)");
    }
    if (i + 1 >= argc) throw Error(flag + ": missing value (see --help)");
    value = argv[++i];
    if (flag == "--model") {
      a.model = value;
    } else if (flag == "--device") {
      if (value != "cpu" && value != "cuda" && value != "auto") {
        throw Error("--device: expected cpu, cuda or auto, got '" + value + "'");
      }
      a.device = value;
    } else if (flag == "--dtypes") {
      a.dtypes_given = true;
      a.dtypes.clear();
      size_t begin = 0;
      while (begin <= value.size()) {
        const size_t end = std::min(value.find(',', begin), value.size());
        a.dtypes.push_back(FlamingoModel::parse_dtype(value.substr(begin, end - begin)));
        begin = end + 1;
      }
    } else if (flag == "--weights") {
      a.weights_given = true;
      a.weights = split_list(value);
      for (const std::string& w : a.weights) {
        FlamingoModel::resolve_weights(w, at::kFloat, false);  // throws for a bad name
      }
    } else if (flag == "--batches") {
      a.batches.clear();
      for (const std::string& b : split_list(value)) a.batches.push_back(parse_int(flag, b, 1));
    } else if (flag == "--threads") {
      a.threads = static_cast<int>(parse_int(flag, value, 1));
    } else if (flag == "--steps") {
      a.steps = parse_int(flag, value, 1);
    } else {
      a.json_path = value;
    }
  }
  if (!a.help && a.model.empty()) throw Error("--model DIR is required (see --help)");
  return a;
}

}  // namespace flamingo::bench
