// The bfloat16 x bfloat16 weight product on AMX tiles (tdpbf16ps), for CPUs with AMX-BF16
// (Isa::kAmx): y [m, n] = x [m, k] W^T with x and W bfloat16, sums in float32.
//
// The weights stay as stored (row-major [n, k], a memory-mapped checkpoint as it is): a tile
// of 16 weight rows x 32 K is the AMX "A" operand, loaded with the row stride; x is repacked
// per product into the "B" layout (pairs of K per token). Each output element is summed over
// K in chunks of 32, in increasing K, by tdpbf16ps (products of bfloat16 values are exact in
// float32; the order of the adds inside a chunk is the hardware's, denormals flushed); K is
// padded with zeros to a multiple of 32. An element's sum does not depend on the other tokens
// in the tile, the tile's width, the number of tokens or the threads (the kernel tests check
// this bit for bit), so results are batch-invariant like the other paths. They differ from the
// float32 paths' bits (16 lane sums of float32 FMAs): a model uses one path for all its steps.
//
// Work is split by output columns over the kernel pool, 32 columns per indivisible block.
// Thread-safe. Requires cpu_isa() >= Isa::kAmx (the probe asks the OS for the tile registers).
#pragma once

#include <cstdint>

#include "kernels/packed_weight.h"

namespace flamingo::kernels {

// y [m, w.n] float32 = x [m, w.k] (bfloat16 bits, row-major) W^T, W bfloat16. m == 0 or
// w.n == 0 do nothing; w.k == 0 gives zeros.
void amx_bf16_product(const uint16_t* x, int64_t m, const WeightView& w, float* y);

// For benchmarks' peak: `iterations` x 4 tile products (16 x 16 x 32 each, 16384 flops) on
// tile registers only, on this thread.
void amx_bf16_spin(int64_t iterations);

}  // namespace flamingo::kernels
