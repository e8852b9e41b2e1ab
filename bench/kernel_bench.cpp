// flamingo-kernel-bench: one kernel alone, for tuning it (prints figures; not a test). The
// model-level figures come from flamingo-bench; this isolates a weight product or the decode
// attention, with the read bandwidth measured right before for reference.
#include <ATen/ATen.h>

#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench/machine_limits.h"
#include "bench/timing.h"
#include "kernels/cpu_isa.h"
#include "kernels/packed_weight.h"
#include "kernels/paged_attention.h"
#include "kernels/thread_pool.h"
#include "kernels/weight_product.h"

namespace flamingo::bench {
namespace {

constexpr const char* kUsage =
    R"(usage: flamingo-kernel-bench product [--type T] [--x X] [--rows M] [--n N] [--k K] [--count C]
                                     [--reps R]
       flamingo-kernel-bench attention [--dtype D] [--tokens T] [--context L] [--heads H]
                                       [--head-dim D] [--layers N] [--reps R]
       common: [--threads N]; FLAMINGO_KERNEL_ISA=avx2|avx512|... forces a lower kernel path

product:   y = x W^T through kernels::weight_product, as a model's linears run it: x [M, K] in X
           (bfloat16 or float32; default bfloat16, as a bfloat16 model), C weights [N, K] held
           as T (float32, bfloat16, int8; default bfloat16), one after the other (C large:
           streamed from memory; C = 1: from cache after the first rep). Prints the best of R
           reps (default 20): ms, GFLOP/s, GB/s of weight bytes. Defaults: M 16, N 2816,
           K 1024, C 64 (the `small` MLP).
attention: paged_attention of T query tokens (one per sequence, decode) against L cached
           positions each, H heads of D, K/V in --dtype (bfloat16, float32; default
           bfloat16), over N layers' caches with shuffled blocks of 16. Prints the best of R
           reps (default 20): ms for the N layers and GB/s of K/V read. Defaults: T 16, L 64,
           H 16, D 64, N 16 (`small`); the 9b shape is --heads 32 --head-dim 128 --layers 32.
)";

struct Args {
  std::string what;
  std::string type = "bfloat16", x = "bfloat16";
  int64_t rows = 16, n = 2816, k = 1024, count = 64;
  int64_t tokens = 16, context = 64, heads = 16, head_dim = 64, layers = 16;
  int64_t reps = 20, threads = 0;
};

Args parse(int argc, char** argv) {
  if (argc < 2) throw std::invalid_argument("expected `product` or `attention`");
  Args a;
  a.what = argv[1];
  if (a.what == "--help" || a.what == "-h") return a;
  if (a.what != "product" && a.what != "attention") {
    throw std::invalid_argument("expected `product` or `attention`, found '" + a.what + "'");
  }
  for (int i = 2; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help") {
      a.what = "--help";
      return a;
    }
    if (i + 1 >= argc) throw std::invalid_argument(flag + " needs a value");
    const std::string v = argv[++i];
    if (flag == "--type" || flag == "--dtype") {
      a.type = v;
      continue;
    }
    if (flag == "--x") {
      if (v != "float32" && v != "bfloat16") {
        throw std::invalid_argument("--x must be float32 or bfloat16, got " + v);
      }
      a.x = v;
      continue;
    }
    int64_t* field = flag == "--rows"       ? &a.rows
                     : flag == "--n"        ? &a.n
                     : flag == "--k"        ? &a.k
                     : flag == "--count"    ? &a.count
                     : flag == "--tokens"   ? &a.tokens
                     : flag == "--context"  ? &a.context
                     : flag == "--heads"    ? &a.heads
                     : flag == "--head-dim" ? &a.head_dim
                     : flag == "--layers"   ? &a.layers
                     : flag == "--reps"     ? &a.reps
                     : flag == "--threads"  ? &a.threads
                                            : nullptr;
    if (field == nullptr) throw std::invalid_argument("unknown flag " + flag);
    *field = std::stoll(v);
    if (*field < 1) throw std::invalid_argument(flag + " must be >= 1, got " + v);
  }
  return a;
}

void bench_product(const Args& a) {
  const kernels::WeightType type = kernels::parse_weight_type(a.type);
  std::vector<kernels::PackedWeight> ws;
  int64_t bytes = 0;
  for (int64_t i = 0; i < a.count; ++i) {
    ws.push_back(kernels::PackedWeight::from_dense(at::randn({a.n, a.k}), type));
    bytes += ws.back().bytes();
  }
  const at::Tensor x = at::randn({a.rows, a.k}).to(a.x == "float32" ? at::kFloat : at::kBFloat16);
  const double t = best(timed_runs(a.reps, [&] {
    for (const kernels::PackedWeight& w : ws) kernels::weight_product(x, w);
  }));
  const double flops = 2.0 * a.rows * a.n * a.k * a.count;
  std::printf(
      "product %s weights, %s x, %lld rows x [%lld, %lld] x %lld weights (%.3f GB): %.3f ms, %.1f "
      "GFLOP/s, %.1f GB/s\n",
      a.type.c_str(), a.x.c_str(), static_cast<long long>(a.rows), static_cast<long long>(a.n),
      static_cast<long long>(a.k), static_cast<long long>(a.count), bytes / 1e9, t * 1e3,
      flops / t / 1e9, bytes / t / 1e9);
}

void bench_attention(const Args& a) {
  const at::ScalarType dtype = a.type == "float32" ? at::kFloat : at::kBFloat16;
  if (a.type != "float32" && a.type != "bfloat16") {
    throw std::invalid_argument("--dtype must be float32 or bfloat16, got " + a.type);
  }
  constexpr int64_t kBlock = 16;
  const int64_t blocks = (a.context + kBlock - 1) / kBlock;
  std::vector<at::Tensor> k_caches, v_caches;
  for (int64_t l = 0; l < a.layers; ++l) {
    k_caches.push_back(at::randn({a.tokens * blocks, kBlock, a.heads, a.head_dim}).to(dtype));
    v_caches.push_back(at::randn({a.tokens * blocks, kBlock, a.heads, a.head_dim}).to(dtype));
  }
  const at::Tensor tables = at::randperm(a.tokens * blocks, at::kInt).reshape({a.tokens, blocks});
  const at::Tensor seq = at::arange(a.tokens, at::kInt);
  const at::Tensor ctx = at::full({a.tokens}, a.context, at::kInt);
  const at::Tensor q = at::randn({a.tokens, a.heads, a.head_dim}).to(dtype);
  const double t = best(timed_runs(a.reps, [&] {
    for (int64_t l = 0; l < a.layers; ++l) {
      kernels::paged_attention(q, k_caches[l], v_caches[l], tables, seq, ctx, 0.125);
    }
  }));
  const double bytes = 2.0 * a.tokens * a.context * a.heads * a.head_dim *
                       static_cast<double>(at::elementSize(dtype)) * a.layers;
  std::printf(
      "attention %s, %lld tokens x %lld positions, %lld heads of %lld, %lld layers: %.3f ms, %.1f "
      "GB/s of K/V\n",
      a.type.c_str(), static_cast<long long>(a.tokens), static_cast<long long>(a.context),
      static_cast<long long>(a.heads), static_cast<long long>(a.head_dim),
      static_cast<long long>(a.layers), t * 1e3, bytes / t / 1e9);
}

int run(int argc, char** argv) {
  const Args a = parse(argc, argv);
  if (a.what == "--help" || a.what == "-h") {
    std::fputs(kUsage, stdout);
    return 0;
  }
  if (a.threads > 0) kernels::set_kernel_threads(static_cast<int>(a.threads));
  at::manual_seed(1);
  std::printf("%d threads, kernels: %s, memory read (256 MiB) %.1f GB/s\n",
              kernels::kernel_threads(), kernels::isa_name(kernels::active_isa()),
              pool_read_gbps(256LL << 20, 3));
  if (a.what == "product") {
    bench_product(a);
  } else {
    bench_attention(a);
  }
  return 0;
}

}  // namespace
}  // namespace flamingo::bench

int main(int argc, char** argv) {
  try {
    return flamingo::bench::run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "flamingo-kernel-bench: %s\n\n%s", e.what(), flamingo::bench::kUsage);
    return 2;
  }
}
