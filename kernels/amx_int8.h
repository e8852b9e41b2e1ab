// The int8 weight product on AMX tiles (tdpbssd), for CPUs with AMX-INT8 (Isa::kAmx): the
// bits of the definition in kernels/int8_product.h. Per group of 64 K, x's quantized rows are
// the A tile (up to 16 rows x 64 bytes) and a packed block's group (kernels/packed_weight.h: 16
// K quads x 16 weight rows x 4 bytes) is the B tile as stored; the C tile holds the exact
// integer dots D[g] of 16 x rows x 16 weight rows, and AVX-512 adds float(D) x (sx x sw) into
// the float32 sums, one fma per group, as the other paths do. Up to 16 x rows (one A tile) the
// sums of a block stay in registers across all groups. Internal to int8_product.
#pragma once

#include <cstdint>

#include "kernels/int8_quant.h"
#include "kernels/packed_weight.h"

namespace flamingo::kernels {

// From this many x rows up, int8_product_raw uses AMX where the CPU has it (fewer rows read the
// weights faster through vpdpbusd; both give the same bits). Measured: docs/PERFORMANCE.md.
constexpr int64_t kAmxInt8MinRows = 6;

// Output columns [n0, n1) (n0 a multiple of 16) of y [m, w.n] for x quantized as qx (with
// QuantExtra::kTileRows), on this thread. Requires cpu_isa() >= Isa::kAmx.
void amx_int8_columns(const detail::QuantX& qx, int64_t m, const WeightView& w, float* y,
                      int64_t n0, int64_t n1);

// For benchmarks' peak: `iterations` x 4 tile products (16 x 16 x 64 each, 32768 integer ops)
// on tile registers only, on this thread.
void amx_int8_spin(int64_t iterations);

}  // namespace flamingo::kernels
