// The weight product for int8 weights (kernels/weight_product routes them here): integer dot
// products over groups of 64 along K, with the activations quantized the same way as the
// weights. Torch-free.
//
// Definition (every path gives these bits): for x row m and weight row n, per group g of 64
// consecutive K (K padded with zeros to a multiple of 64):
//   sx[m][g] = max |x[m][k]| / 127 over the group, qx = round-to-nearest-even(x / sx) (0 when
//   sx is 0; a non-finite x makes sx NaN, so the output is NaN), like the weights' own
//   symmetric quantization (kernels/packed_weight.h: qw in [-127, 127], scale sw[n][g]);
//   D[g] = sum over the group of qx[k] * qw[n][k], an exact integer (|D| <= 64 x 127 x 127, so
//   float(D) is exact too); acc = fma(float(D[g]), sx[m][g] * sw[n][g], acc) from acc = 0 in
//   increasing g, and y[m][n] = acc.
// So a row's bits depend on nothing but that row and the weight: not on the row count, the
// other rows, the thread count or the ISA path, and each path may add a group's integer
// products in any order. Activations quantized per group of 64 are the scheme llama.cpp uses
// for its int8 dot products (Q8_0 x Q8_0, groups of 32): an outlier spoils its own group only.
// The cost against float32 activations is measured in docs/PERFORMANCE.md.
//
// Paths, on the packed layout (kernels/packed_weight.h: one 64-byte line = one K quad of 16
// weight rows): AMX (tdpbssd, x as the A tile and 16 weight rows x 64 K as the B tile, from 8 x
// rows up: kernels/amx_int8.h), AVX-512 VNNI (vpdpbusd of the weight line, offset to unsigned,
// against a broadcast quad of qx; the offset's sum taken out through the starting value),
// AVX-512 BW (vpmaddubsw of |qx| and the weights with qx's sign, then vpmaddwd), AVX2 (the same
// with vpsignb), portable C++.
#pragma once

#include <cstdint>

#include "kernels/cpu_isa.h"
#include "kernels/packed_weight.h"

namespace flamingo::kernels {

// y [m, w.n] = the int8 product of x [m, w.k] (row-major float32) and w (type kInt8, packed,
// group 64, every q in [-127, 127]) on `isa` (at most cpu_isa()), over the kernel pool.
void int8_product_raw(const float* x, int64_t m, const WeightView& w, float* y, Isa isa);

// The activation side of the definition above for one row of k values: q [groups * 64] (zero
// past k) and scales [groups]. Exposed for tests and references.
void quantize_activation_row(const float* x, int64_t k, int8_t* q, float* scales);

}  // namespace flamingo::kernels
