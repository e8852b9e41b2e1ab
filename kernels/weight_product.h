// The weight product of every linear layer: y = x W^T for 1..N rows of x, with W held in
// float32, bfloat16 or int8 (symmetric, one float32 scale per output row and group of
// kInt8Group consecutive K). CPU kernels for AVX-512 (F+BW+VL, and VNNI for int8), AVX2+FMA and
// portable C++, chosen at run time (kernels/cpu_isa.h; FLAMINGO_KERNEL_ISA lowers the choice),
// work split by output columns over the kernel thread pool (kernels/thread_pool.h).
//
// Bit-identical results whatever the row count, the other rows, the thread count and the ISA
// path. float32 / bfloat16 weights: x and the sums in float32; y[m][n] is the fixed tree sum
// (see reduce16 in kernels/product_common.h) of 16 lane sums, lane l accumulating
// fma(x[m][k], w[n][k], lane) for k = l, l + 16, ... in increasing k (K padded with zeros to a
// multiple of 16), a bfloat16 weight entering as its exact float32 value; the scalar path uses
// std::fma, so all paths give the same bits on one machine. int8 weights: x is quantized per
// group of 64 too and each group's products are summed as integers (the definition is in
// kernels/int8_product.h). One exception: bfloat16 weights with bfloat16 x on Isa::kAmx run
// AMX tiles (kernels/amx_product.h), and on Isa::kAvx512Bf16 vdpbf16ps dot products
// (kernels/bf16_dot_product.h), batch-invariant too but each with its own summation order, so
// their bits differ from the other paths' (FLAMINGO_KERNEL_ISA=avx512_vnni avoids them).
//
// Thread-safe (no state besides the CPU probe, the kernel pool and per-thread scratch).
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

// x [M, K] float32 or bfloat16 (any layout) -> [M, N] in x's dtype: float32 sums (on AMX or
// vdpbf16ps for bfloat16 x and weights, see above), plus the
// bias [N] (any float dtype; optional) in float32, a bfloat16 result rounded once at the end.
// Throws c10::Error for wrong shapes or dtypes.
at::Tensor weight_product(const at::Tensor& x, const PackedWeight& w, const at::Tensor& bias = {},
                          Isa isa = active_isa());

}  // namespace flamingo::kernels
