// Times the paged attention kernel (kernels/cuda/attention.h) on the GPU for the IDEFICS-9b
// decoder's heads (32 x 128, blocks of 16 positions, shuffled) at 1, 16 and 64 decode tokens
// of 512 and 2048 cached positions each, against the device's copy bandwidth measured in the
// same run: K/V bytes read / time. Prints a table and writes JSON to the file given as the
// first argument. Exits 77 without a device (scripts/gpu-check.sh reports it as skipped).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "gpu/bench_util.cuh"
#include "kernels/cuda/attention.h"

using flamingo::gpu_bench::best_ms;
using flamingo::gpu_bench::check;

int main(int argc, char** argv) {
  if (!flamingo::gpu_bench::have_device("attention_bench")) return 77;
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, 0), "properties");
  const double copy_gbps = flamingo::gpu_bench::copy_gbps();
  std::printf("device %s; copy bandwidth (read + write) %.0f GB/s\n", prop.name, copy_gbps);
  std::printf("%8s %8s %10s %10s %8s\n", "tokens", "context", "us", "KV GB/s", "% copy");
  const int64_t heads = 32, d = 128, block = 16;
  std::string json = "{\"device\": \"" + std::string(prop.name) +
                     "\", \"copy_gbps\": " + std::to_string(copy_gbps) + ", \"runs\": [";
  bool first = true;
  std::mt19937 rng(1);
  for (int64_t ctx : {512, 2048}) {
    for (int64_t tokens : {1, 16, 64}) {
      const int64_t per_seq = ctx / block, blocks = tokens * per_seq;
      const int64_t cache_elems = blocks * block * heads * d;
      uint16_t *k = nullptr, *v = nullptr, *q = nullptr, *out = nullptr;
      int32_t *table = nullptr, *seq = nullptr, *lens = nullptr;
      check(cudaMalloc(&k, cache_elems * 2), "malloc k");
      check(cudaMalloc(&v, cache_elems * 2), "malloc v");
      check(cudaMemset(k, 0x3c, cache_elems * 2), "memset k");
      check(cudaMemset(v, 0x3c, cache_elems * 2), "memset v");
      check(cudaMalloc(&q, tokens * heads * d * 2), "malloc q");
      check(cudaMemset(q, 0x3c, tokens * heads * d * 2), "memset q");
      check(cudaMalloc(&out, tokens * heads * d * 2), "malloc out");
      std::vector<int32_t> ht(blocks), hs(tokens), hl(tokens, static_cast<int32_t>(ctx));
      std::iota(ht.begin(), ht.end(), 0);
      std::shuffle(ht.begin(), ht.end(), rng);
      std::iota(hs.begin(), hs.end(), 0);
      check(cudaMalloc(&table, blocks * 4), "malloc table");
      check(cudaMalloc(&seq, tokens * 4), "malloc seq");
      check(cudaMalloc(&lens, tokens * 4), "malloc lens");
      check(cudaMemcpy(table, ht.data(), blocks * 4, cudaMemcpyHostToDevice), "copy");
      check(cudaMemcpy(seq, hs.data(), tokens * 4, cudaMemcpyHostToDevice), "copy");
      check(cudaMemcpy(lens, hl.data(), tokens * 4, cudaMemcpyHostToDevice), "copy");
      const float ms = best_ms(20, [&] {
        flamingo::kernels::cuda::paged_attention(q, tokens, heads, d, k, v, block, table, per_seq,
                                                 seq, lens, ctx, 0.088f, out, nullptr);
      });
      const double gbps = 2.0 * cache_elems * 2 / (ms * 1e-3) / 1e9;
      std::printf("%8ld %8ld %10.1f %10.0f %7.0f%%\n", static_cast<long>(tokens),
                  static_cast<long>(ctx), ms * 1e3, gbps, 100.0 * gbps / copy_gbps);
      json += std::string(first ? "" : ", ") + "{\"tokens\": " + std::to_string(tokens) +
              ", \"context\": " + std::to_string(ctx) + ", \"us\": " + std::to_string(ms * 1e3) +
              ", \"kv_gbps\": " + std::to_string(gbps) + "}";
      first = false;
      for (void* p : {static_cast<void*>(k), static_cast<void*>(v), static_cast<void*>(q),
                      static_cast<void*>(out), static_cast<void*>(table), static_cast<void*>(seq),
                      static_cast<void*>(lens)}) {
        cudaFree(p);
      }
    }
  }
  json += "]}\n";
  if (argc > 1) flamingo::gpu_bench::write_file(argv[1], json);
  return 0;
}
