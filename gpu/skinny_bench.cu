// Times the skinny bfloat16 product (kernels/cuda/skinny_product.h) on the GPU for the
// IDEFICS-9b decoder's shapes at 1, 16 and 64 rows, against the device's copy bandwidth
// measured in the same run (cudaMemcpy device to device of 1 GiB: bytes read + written / time).
// Prints a table and writes JSON to the file given as the first argument. Exits 77 without a
// device (scripts/gpu-check.sh reports it as skipped).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "gpu/bench_util.cuh"
#include "kernels/cuda/skinny_product.h"

using flamingo::gpu_bench::best_ms;
using flamingo::gpu_bench::check;

int main(int argc, char** argv) {
  if (!flamingo::gpu_bench::have_device("skinny_bench")) return 77;
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, 0), "properties");
  const double copy_gbps = flamingo::gpu_bench::copy_gbps();
  std::printf("device %s; copy bandwidth (read + write) %.0f GB/s\n", prop.name, copy_gbps);
  std::printf("%8s %8s %6s %10s %10s %8s\n", "n", "k", "rows", "us", "GB/s", "% copy");
  struct Shape {
    int64_t n, k;
  };
  const Shape shapes[] = {{4096, 4096}, {11008, 4096}, {4096, 11008}, {32002, 4096}};
  std::string json = "{\"device\": \"" + std::string(prop.name) +
                     "\", \"copy_gbps\": " + std::to_string(copy_gbps) + ", \"runs\": [";
  bool first = true;
  for (const Shape& s : shapes) {
    // Enough copies of the weight to leave L2 (50 MB on an H100/H200) behind.
    const int64_t wbytes = s.n * s.k * 2;
    const int copies = static_cast<int>(std::max<int64_t>(1, (int64_t{256} << 20) / wbytes + 1));
    std::vector<uint16_t*> w(copies);
    for (auto& p : w) {
      check(cudaMalloc(&p, wbytes), "malloc w");
      check(cudaMemset(p, 0x3c, wbytes), "memset w");
    }
    uint16_t* x = nullptr;
    float* y = nullptr;
    check(cudaMalloc(&x, 64 * s.k * 2), "malloc x");
    check(cudaMemset(x, 0x3c, 64 * s.k * 2), "memset x");
    check(cudaMalloc(&y, 64 * s.n * 4), "malloc y");
    for (int64_t rows : {1, 16, 64}) {
      int next = 0;
      const float ms = best_ms(20, [&] {
        flamingo::kernels::cuda::skinny_bf16_product(x, rows, w[next], s.n, s.k, y, nullptr);
        next = (next + 1) % copies;
      });
      const double gbps = wbytes / (ms * 1e-3) / 1e9;
      std::printf("%8ld %8ld %6ld %10.1f %10.0f %7.0f%%\n", static_cast<long>(s.n),
                  static_cast<long>(s.k), static_cast<long>(rows), ms * 1e3, gbps,
                  100.0 * gbps / copy_gbps);
      json += std::string(first ? "" : ", ") + "{\"n\": " + std::to_string(s.n) +
              ", \"k\": " + std::to_string(s.k) + ", \"rows\": " + std::to_string(rows) +
              ", \"us\": " + std::to_string(ms * 1e3) +
              ", \"weight_gbps\": " + std::to_string(gbps) + "}";
      first = false;
    }
    for (auto* p : w) cudaFree(p);
    cudaFree(x);
    cudaFree(y);
  }
  json += "]}\n";
  if (argc > 1) flamingo::gpu_bench::write_file(argv[1], json);
  return 0;
}
