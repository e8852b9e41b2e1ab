// Skinny matrix product y = x W^T for few rows of x (decode-time projections), CPU kernel.
// Streams the weight once per call (tiled along K so the rows of x stay in cache while the
// weight rows pass), register-blocks up to 3 rows of x against 4 weight rows (one row of x
// against 8) with 8-wide FMAs, and splits the weight rows over threads in contiguous ranges with
// at::parallel_for (so its file must be compiled with -fopenmp, which it checks). AVX2+FMA code
// is chosen at run time; a portable scalar kernel serves other CPUs. Three layers, as every
// kernel here: the CPU kernels on raw pointers, a launcher, and the checked entry point on
// tensors.
//
// Batch invariance: y[m][n] is summed in an order that depends only on K: eight lane sums over
// k = l, l + 8, l + 16, ... (lane l, in increasing k, the K % 8 tail zero-padded), then the
// fixed tree ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7)). So a row's result is
// bit-identical whatever the other rows, the row count and the thread count (for one kernel
// choice on one machine: the AVX2 kernel fuses multiply-add, the scalar one does not).
//
// Thread-safe (no state besides the one-time CPU feature probe).
#pragma once

#include <ATen/ATen.h>

namespace flamingo::kernels {

// The row count up to which the model routes float32 projections here (decode batches); the
// kernel itself accepts any count (in groups of this many rows, each streaming the weight).
constexpr int64_t kMaxSkinnyRows = 32;

enum class SkinnyIsa {
  kAuto,    // AVX2+FMA when the CPU has both, else scalar
  kScalar,  // the portable kernel (tests)
};

// True when this CPU runs the AVX2+FMA kernel under SkinnyIsa::kAuto.
bool skinny_gemm_has_avx2();

// x [M, K] float32, weight [N, K] float32, both CPU -> [M, N] float32, x weight^T (no bias).
// Non-contiguous inputs are copied to contiguous ones first (a copy of the whole weight: pass
// contiguous weights). Any M >= 0, K >= 0, N >= 0; K == 0 gives zeros.
at::Tensor skinny_gemm(const at::Tensor& x, const at::Tensor& weight,
                       SkinnyIsa isa = SkinnyIsa::kAuto);

}  // namespace flamingo::kernels
