// flamingo-bench --device cuda (issue 13): the checkpoint's text decoder on the GPU, as
// `flamingo-server --device cuda` runs it (model/cuda_decoder.h over the CUDA kernels,
// bfloat16 weights read from the folder): the device's copy bandwidth, the decoder's load
// time, prefill of 128 and 512 tokens of one sequence that sees one image, and decode steps at
// each batch size after a 64-token prefill of every sequence, with the weight bytes a step
// reads / step time against the copy bandwidth (issue 13's first target). The vision tower and
// perceiver are not timed here (they stay on the CPU under --device cuda; random latents stand
// in for an image). Torch-free.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace flamingo::bench {

struct DeviceBenchOptions {
  std::string model_dir;
  std::vector<int64_t> batches;  // decode batch sizes
  int64_t steps = 10;            // timed decode steps per batch size (median reported)
  // The kernels' CPU references instead of the GPU (FLAMINGO_BENCH_HOST_OPS=1): a check of the
  // bench itself where no GPU is; its times say nothing about a GPU.
  bool host_ops = false;
};

// FLAMINGO_BENCH_HOST_OPS=1 in the environment: DeviceBenchOptions::host_ops.
bool device_bench_host_ops();

// Whether this build has the CUDA kernels and a device answers (host_ops: the build alone);
// `why` says why not.
bool device_bench_available(bool host_ops, std::string* why);

// Runs the bench, prints a table on stdout and returns the run as JSON: device, copy_gbps,
// weights, load_s, model_weight_bytes, decode_weight_bytes_per_step, prefill[] (tokens, ms,
// tokens_per_s), decode[] (batch, step_ms, weight_gbps, copy_fraction, tokens_per_s).
// Throws flamingo::Error for a bad folder or when the build has no CUDA kernels.
nlohmann::json run_device_bench(const DeviceBenchOptions& options);

}  // namespace flamingo::bench
