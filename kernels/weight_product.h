// The weight product of every linear layer: y = x W^T for 1..N rows of x, with W held in
// float32, bfloat16 or int8 (symmetric, one float32 scale per output row and group of
// kInt8Group consecutive K), x and the sums in float32. CPU kernels for AVX-512 (F+BW+VL),
// AVX2+FMA and portable C++, chosen at run time (kernels/cpu_isa.h; FLAMINGO_KERNEL_ISA lowers
// the choice), work split by output columns over the kernel thread pool (kernels/thread_pool.h).
//
// Bit-identical results whatever the row count, the other rows, the thread count and the ISA
// path: y[m][n] is the fixed tree sum (see reduce16 in the .cpp) of 16 lane sums, lane l
// accumulating fma(x[m][k], w[n][k], lane) for k = l, l + 16, ... in increasing k (K padded
// with zeros to a multiple of 16). A weight element enters as its exact float32 value
// (bfloat16 widened; int8 as float(q) * scale, one rounding). The scalar path uses std::fma,
// so all three paths give the same bits on one machine.
//
// Thread-safe (no state besides the CPU probe and the kernel pool).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <string>

#include "kernels/cpu_isa.h"
#include "kernels/packed_weight.h"

namespace flamingo::kernels {

// y [m, w.n] = x [m, w.k] W^T, both row-major float32, on `isa` (clamped to the CPU's) over the
// kernel pool. m == 0, n == 0 do nothing; k == 0 gives zeros.
void weight_product_raw(const float* x, int64_t m, const WeightView& w, float* y, Isa isa);

// x [M, K] float32 or bfloat16 (any layout) -> [M, N] in x's dtype: float32 sums, plus the
// bias [N] (any float dtype; optional) in float32, a bfloat16 result rounded once at the end.
// Throws c10::Error for wrong shapes or dtypes.
at::Tensor weight_product(const at::Tensor& x, const PackedWeight& w, const at::Tensor& bias = {},
                          Isa isa = active_isa());

}  // namespace flamingo::kernels
