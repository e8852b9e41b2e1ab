// The machine's limits that flamingo-bench sets its figures against, measured on the kernel
// thread pool (kernels/thread_pool.h), i.e. with the threads the model's products use.
#pragma once

#include <cstdint>

namespace flamingo::bench {

// Best of `reps` passes that read a `bytes` buffer (summing it with vector loads, every pool
// thread its own contiguous part): GB/s of pure reading.
double pool_read_gbps(int64_t bytes, int reps);

// The same reading on one buffer kept for repeated measurements (first touched by the threads
// that read it), for a limit measured next to each figure set against it: on a shared host the
// bandwidth a VM gets moves between runs and within one (measured on 2-core VMs: 40-70 GB/s).
class ReadProbe {
 public:
  explicit ReadProbe(int64_t bytes);
  ~ReadProbe();
  ReadProbe(const ReadProbe&) = delete;
  ReadProbe& operator=(const ReadProbe&) = delete;
  double gbps(int reps) const;  // best of `reps` passes

 private:
  float* buf_;
  int64_t n_;
};

// float32 multiply-add peak of the active kernel path (kernels::active_isa(): 16-wide FMAs on
// AVX-512, 8-wide on AVX2, scalar std::fma otherwise) in GFLOP/s, from independent register
// FMA chains on every pool thread: what a compute-bound product can at most reach.
double pool_fma_peak_gflops();

// bfloat16 tile multiply-add peak (tdpbf16ps on tile registers, every pool thread) in GFLOP/s
// when the kernels run AMX (kernels::active_isa() >= Isa::kAmx), else 0: what the bfloat16
// products of a bfloat16 model can at most reach there.
double pool_amx_bf16_peak_gflops();

// bfloat16 dot-product peak (independent vdpbf16ps on registers, every pool thread) in GFLOP/s
// when the kernels run them for bfloat16 products (kernels::active_isa() == Isa::kAvx512Bf16,
// kernels/bf16_dot_product.h), else 0.
double pool_bf16_dot_peak_gflops();

// int8 multiply-add peak of the int8 weight products in GOP/s (2 ops per multiply-add), every
// pool thread: tdpbssd on tile registers where the kernels run AMX, independent vpdpbusd
// chains on AVX-512 VNNI, else 0 (the vpmaddubsw paths: their limit is the FMA peak's order).
// `name` gets which instruction.
double pool_int8_peak_gops(const char** name);

// The process's peak resident set so far (VmHWM), in bytes (-1 when unknown).
int64_t peak_rss_bytes();

}  // namespace flamingo::bench
