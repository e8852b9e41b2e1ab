#include "bench/machine_limits.h"

// GCC 12 warns about the undefined lanes its own _mm512_reduce_add_ps starts from.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "kernels/amx_int8.h"
#include "kernels/amx_product.h"
#include "kernels/bf16_dot_product.h"
#include "kernels/cpu_isa.h"
#include "kernels/thread_pool.h"

namespace flamingo::bench {
namespace {

using kernels::Isa;

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

__attribute__((target("avx2"))) float sum_avx2(const float* p, int64_t n) {
  __m256 a = _mm256_setzero_ps(), b = a, c = a, d = a;
  for (int64_t i = 0; i + 32 <= n; i += 32) {
    a = _mm256_add_ps(a, _mm256_load_ps(p + i));
    b = _mm256_add_ps(b, _mm256_load_ps(p + i + 8));
    c = _mm256_add_ps(c, _mm256_load_ps(p + i + 16));
    d = _mm256_add_ps(d, _mm256_load_ps(p + i + 24));
  }
  alignas(32) float o[8];
  _mm256_store_ps(o, _mm256_add_ps(_mm256_add_ps(a, b), _mm256_add_ps(c, d)));
  return o[0] + o[1] + o[2] + o[3] + o[4] + o[5] + o[6] + o[7];
}

float sum_scalar(const float* p, int64_t n) {
  float s[4] = {};
  for (int64_t i = 0; i + 4 <= n; i += 4) {
    for (int j = 0; j < 4; ++j) s[j] += p[i + j];
  }
  return s[0] + s[1] + s[2] + s[3];
}

constexpr int kChains = 12;  // independent FMA chains per thread (latency 4 x 2 ports + slack)
constexpr int64_t kIters = 1 << 23;

__attribute__((target("avx512f,fma"))) float fma_chains_512(float seed) {
  __m512 a[kChains];
  for (int i = 0; i < kChains; ++i) a[i] = _mm512_set1_ps(seed + i * 1e-3f);
  const __m512 m = _mm512_set1_ps(0.9999999f), c = _mm512_set1_ps(1e-7f);
  for (int64_t it = 0; it < kIters; ++it) {
#pragma GCC unroll 12
    for (int i = 0; i < kChains; ++i) a[i] = _mm512_fmadd_ps(a[i], m, c);
  }
  __m512 s = a[0];
  for (int i = 1; i < kChains; ++i) s = _mm512_add_ps(s, a[i]);
  return _mm512_reduce_add_ps(s);
}

// kChains independent vpdpbusd chains (64 multiply-adds each) for kIters rounds.
__attribute__((target("avx512f,avx512vnni"))) int32_t dpbusd_chains(int32_t seed) {
  __m512i a[kChains];
  for (int i = 0; i < kChains; ++i) a[i] = _mm512_set1_epi32(seed + i);
  const __m512i u = _mm512_set1_epi8(3), s = _mm512_set1_epi8(-2);
  for (int64_t it = 0; it < kIters; ++it) {
#pragma GCC unroll 12
    for (int i = 0; i < kChains; ++i) a[i] = _mm512_dpbusd_epi32(a[i], u, s);
  }
  __m512i r = a[0];
  for (int i = 1; i < kChains; ++i) r = _mm512_add_epi32(r, a[i]);
  return _mm512_reduce_add_epi32(r);
}

__attribute__((target("avx2,fma"))) float fma_chains_256(float seed) {
  __m256 a[kChains];
  for (int i = 0; i < kChains; ++i) a[i] = _mm256_set1_ps(seed + i * 1e-3f);
  const __m256 m = _mm256_set1_ps(0.9999999f), c = _mm256_set1_ps(1e-7f);
  for (int64_t it = 0; it < kIters; ++it) {
#pragma GCC unroll 12
    for (int i = 0; i < kChains; ++i) a[i] = _mm256_fmadd_ps(a[i], m, c);
  }
  alignas(32) float o[8];
  __m256 s = a[0];
  for (int i = 1; i < kChains; ++i) s = _mm256_add_ps(s, a[i]);
  _mm256_store_ps(o, s);
  return o[0];
}

float fma_chains_scalar(float seed, int64_t iters) {
  float a[kChains];
  for (int i = 0; i < kChains; ++i) a[i] = seed + i * 1e-3f;
  for (int64_t it = 0; it < iters; ++it) {
    for (int i = 0; i < kChains; ++i) a[i] = std::fma(a[i], 0.9999999f, 1e-7f);
  }
  float s = 0;
  for (float v : a) s += v;
  return s;
}

// Best wall time in seconds of three runs of fn(task) on every kernel pool thread (one task
// each): the peaks below are set against it.
double best_pool_seconds(const std::function<void(int64_t)>& fn) {
  kernels::ThreadPool& pool = kernels::kernel_pool();
  double best = 1e30;
  for (int r = 0; r < 3; ++r) {
    const double t0 = now_s();
    pool.run(pool.threads(), fn);
    best = std::min(best, now_s() - t0);
  }
  return best;
}

}  // namespace

ReadProbe::ReadProbe(int64_t bytes)
    : buf_(static_cast<float*>(std::aligned_alloc(64, bytes / 4 / 32 * 32 * sizeof(float)))),
      n_(bytes / 4 / 32 * 32) {
  if (buf_ == nullptr) throw std::bad_alloc();
  kernels::ThreadPool& pool = kernels::kernel_pool();
  const int64_t tasks = pool.threads();
  pool.run(tasks, [&](int64_t t) {
    const int64_t b = n_ * t / tasks / 32 * 32,
                  e = t + 1 == tasks ? n_ : n_ * (t + 1) / tasks / 32 * 32;
    std::fill(buf_ + b, buf_ + e, 1.0f);
  });
}

ReadProbe::~ReadProbe() { std::free(buf_); }

double ReadProbe::gbps(int reps) const {
  kernels::ThreadPool& pool = kernels::kernel_pool();
  const int64_t tasks = pool.threads();
  const bool avx2 = kernels::active_isa() >= Isa::kAvx2;
  std::vector<float> sinks(tasks);
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    const double t0 = now_s();
    pool.run(tasks, [&](int64_t t) {
      const int64_t b = n_ * t / tasks / 32 * 32,
                    e = t + 1 == tasks ? n_ : n_ * (t + 1) / tasks / 32 * 32;
      sinks[t] = avx2 ? sum_avx2(buf_ + b, e - b) : sum_scalar(buf_ + b, e - b);
    });
    best = std::min(best, now_s() - t0);
  }
  volatile float keep = sinks[0];
  (void)keep;
  return static_cast<double>(n_ * 4) / best / 1e9;
}

double pool_read_gbps(int64_t bytes, int reps) {
  const ReadProbe probe(bytes);
  probe.gbps(1);  // the first pass warms up
  return probe.gbps(reps);
}

int64_t peak_rss_bytes() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6)) * 1024;
  }
  return -1;
}

double pool_fma_peak_gflops() {
  kernels::ThreadPool& pool = kernels::kernel_pool();
  const int64_t tasks = pool.threads();
  const Isa isa = kernels::active_isa();
  const int64_t lanes = isa >= Isa::kAvx512 ? 16 : isa == Isa::kAvx2 ? 8 : 1;
  const int64_t iters = isa == Isa::kScalar ? kIters / 8 : kIters;
  std::vector<float> sinks(tasks);
  const double best = best_pool_seconds([&](int64_t t) {
    const float seed = 1.0f + t * 1e-4f;
    sinks[t] = isa >= Isa::kAvx512 ? fma_chains_512(seed)
               : isa == Isa::kAvx2 ? fma_chains_256(seed)
                                   : fma_chains_scalar(seed, iters);
  });
  volatile float keep = sinks[0];
  (void)keep;
  return 2.0 * lanes * kChains * static_cast<double>(iters) * tasks / best / 1e9;
}

double pool_amx_bf16_peak_gflops() {
  if (kernels::active_isa() < Isa::kAmx) return 0;
  kernels::ThreadPool& pool = kernels::kernel_pool();
  const int64_t tasks = pool.threads();
  constexpr int64_t kTileIters = 1 << 18;
  const double best = best_pool_seconds([&](int64_t) { kernels::amx_bf16_spin(kTileIters); });
  return 4.0 * 2 * 16 * 16 * 32 * static_cast<double>(kTileIters) * tasks / best / 1e9;
}

double pool_bf16_dot_peak_gflops() {
  if (kernels::active_isa() != Isa::kAvx512Bf16) return 0;
  kernels::ThreadPool& pool = kernels::kernel_pool();
  const int64_t tasks = pool.threads();
  std::vector<float> sinks(tasks);
  const double best =
      best_pool_seconds([&](int64_t t) { sinks[t] = kernels::bf16_dot_spin(kIters); });
  volatile float keep = sinks[0];
  (void)keep;
  return 64.0 * kernels::kBf16DotSpinOps * static_cast<double>(kIters) * tasks / best / 1e9;
}

double pool_int8_peak_gops(const char** name) {
  const Isa isa = kernels::active_isa();
  kernels::ThreadPool& pool = kernels::kernel_pool();
  const int64_t tasks = pool.threads();
  if (isa >= Isa::kAmx) {
    *name = "AMX int8 tile peak (tdpbssd)";
    constexpr int64_t kTileIters = 1 << 18;
    const double best = best_pool_seconds([&](int64_t) { kernels::amx_int8_spin(kTileIters); });
    return 4.0 * 2 * 16 * 16 * 64 * static_cast<double>(kTileIters) * tasks / best / 1e9;
  }
  if (isa < Isa::kAvx512Vnni) return 0;
  *name = "int8 vpdpbusd peak";
  std::vector<int32_t> sinks(tasks);
  const double best =
      best_pool_seconds([&](int64_t t) { sinks[t] = dpbusd_chains(static_cast<int32_t>(t)); });
  volatile int32_t keep = sinks[0];
  (void)keep;
  return 2.0 * 64 * kChains * static_cast<double>(kIters) * tasks / best / 1e9;
}

}  // namespace flamingo::bench
