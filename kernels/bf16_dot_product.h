// The bfloat16 x bfloat16 weight product with AVX-512 BF16 dot products (vdpbf16ps), for CPUs
// that have them but no AMX tiles (Isa::kAvx512Bf16: AMD Zen 4/5, Intel Cooper Lake):
// y [m, n] = x [m, k] W^T with x and W bfloat16, sums in float32.
//
// The weights stay as stored (row-major [n, k], a memory-mapped checkpoint as it is) and so
// does x: one 64-byte vector holds 32 consecutive K of one row, and vdpbf16ps multiplies it
// pairwise with 32 K of x, adding each lane's two products into that lane's float32 sum. So
// output element (m, n) keeps 16 lane sums, lane l taking K = 2l, 2l + 1, then 32 + 2l,
// 32 + 2l + 1, ... in increasing K (K padded with zeros to a multiple of 32), and ends as the
// fixed tree sum of its 16 lanes (reduce16 in kernels/product_common.h). The products of
// bfloat16 values are exact in float32; the adds inside one vdpbf16ps are the hardware's
// (denormals flushed). Nothing in an element's sum depends on the other rows, the row count,
// the register block or the threads (the kernel tests check this bit for bit), so results are
// batch-invariant like the other paths'. They differ from the float32 paths' bits: a model uses
// one path for all its steps.
//
// Against the float32 path for the same bfloat16 weights: no widening of the weights (the
// vector loaded is the operand) and half the multiply-add instructions per weight, which is
// what lets 16 rows cost less than twice one row.
//
// Work is split by output columns over the kernel pool, 8 columns per indivisible block.
// Thread-safe. Requires cpu_isa() >= Isa::kAvx512Bf16.
#pragma once

#include <cstdint>

#include "kernels/packed_weight.h"

namespace flamingo::kernels {

// y [m, w.n] float32 = x [m, w.k] (bfloat16 bits, row-major) W^T, W bfloat16. m == 0 or
// w.n == 0 do nothing; w.k == 0 gives zeros.
void bf16_dot_product(const uint16_t* x, int64_t m, const WeightView& w, float* y);

// For benchmarks' peak: `iterations` x kBf16DotSpinOps independent vdpbf16ps (64 flops each:
// 16 lanes x 2 multiply-adds) on registers only, on this thread. Returns a value that depends
// on the sums so that they are not optimized away.
constexpr int64_t kBf16DotSpinOps = 16;
float bf16_dot_spin(int64_t iterations);

}  // namespace flamingo::kernels
