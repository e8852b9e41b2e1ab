// Shared by the GPU benches (gpu/*_bench.cu): error checks, the best time of a few runs, and
// the device's copy bandwidth, the limit each bench sets its figures against.
#pragma once

#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <string>

namespace flamingo::gpu_bench {

inline void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    std::fprintf(stderr, "bench: %s: %s\n", what, cudaGetErrorString(e));
    std::exit(1);
  }
}

// Best time of `reps` runs of fn on the default stream, in ms.
template <class Fn>
float best_ms(int reps, Fn fn) {
  cudaEvent_t a, b;
  check(cudaEventCreate(&a), "event");
  check(cudaEventCreate(&b), "event");
  float best = 1e30f;
  for (int r = 0; r < reps; ++r) {
    check(cudaEventRecord(a), "record");
    fn();
    check(cudaEventRecord(b), "record");
    check(cudaEventSynchronize(b), "sync");
    float ms = 0;
    check(cudaEventElapsedTime(&ms, a, b), "elapsed");
    best = ms < best ? ms : best;
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return best;
}

// cudaMemcpy device to device of 1 GiB: bytes read + written / time, GB/s (best of 10).
inline double copy_gbps() {
  const size_t bytes = size_t{1} << 30;
  void *src = nullptr, *dst = nullptr;
  check(cudaMalloc(&src, bytes), "malloc");
  check(cudaMalloc(&dst, bytes), "malloc");
  check(cudaMemset(src, 1, bytes), "memset");
  const float ms = best_ms(10, [&] { cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice); });
  cudaFree(src);
  cudaFree(dst);
  return 2.0 * bytes / (ms * 1e-3) / 1e9;
}

// 77 (scripts/gpu-check.sh: skipped) unless a device answers.
inline bool have_device(const char* name) {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("%s: no CUDA device, nothing timed\n", name);
    return false;
  }
  return true;
}

// Writes `text` to `path` (the bench's JSON), saying so on stderr if it cannot.
inline void write_file(const char* path, const std::string& text) {
  FILE* f = std::fopen(path, "w");
  if (f == nullptr) {
    std::fprintf(stderr, "bench: cannot write %s\n", path);
    return;
  }
  std::fputs(text.c_str(), f);
  std::fclose(f);
}

}  // namespace flamingo::gpu_bench
