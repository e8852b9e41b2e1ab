// The weight product for int8 weights (kernels/weight_product routes them here): integer dot
// products over groups of 64 along K, with the activations quantized the same way as the
// weights. Torch-free.
//
// Definition (every path gives these bits): for x row m and weight row n, per group g of 64
// consecutive K (K padded with zeros to a multiple of 64):
//   sx[m][g] = max |x[m][k]| / 127 over the group, qx = round-to-nearest-even(x / sx) (0 when
//   sx is 0; a non-finite x makes sx NaN, so the output is NaN), like the weights' own
//   symmetric quantization (kernels/packed_weight.h: qw in [-127, 127], scale sw[n][g]);
//   lane l (0..15) takes d_l = sum of qx[k] * qw[n][k] over the 4 K at 64g + 4l .. 64g + 4l + 3,
//   an exact integer (|d_l| <= 64516), and accumulates lane_l = fma(float(d_l),
//   sx[m][g] * sw[n][g], lane_l) in increasing g; y[m][n] is the fixed tree sum of the 16 lanes
//   (as for the other weight types).
// So a row's bits depend on nothing but that row and the weight: not on the row count, the
// other rows, the thread count or the ISA path. Activations quantized per group of 64 are the
// scheme llama.cpp uses for its int8 dot products (Q8_0 x Q8_0, groups of 32): an outlier spoils
// its own group only. The cost against float32 activations is measured in docs/PERFORMANCE.md.
//
// Paths: AVX-512 VNNI (vpdpbusd on the weights offset to unsigned, the offset's sum taken out
// through the lane sums' starting value), AVX-512 BW (vpmaddubsw on |qx| and the weights with
// qx's sign, then vpmaddwd), AVX2 (the same with vpsignb), portable C++.
#pragma once

#include <cstdint>

#include "kernels/cpu_isa.h"
#include "kernels/packed_weight.h"

namespace flamingo::kernels {

// y [m, w.n] = the int8 product of x [m, w.k] (row-major float32) and w (type kInt8, group 64,
// every q in [-127, 127]) on `isa` (at most cpu_isa()), over the kernel pool.
void int8_product_raw(const float* x, int64_t m, const WeightView& w, float* y, Isa isa);

// The activation side of the definition above for one row of k values: q [groups * 64] (zero
// past k) and scales [groups]. Exposed for tests and references.
void quantize_activation_row(const float* x, int64_t k, int8_t* q, float* scales);

}  // namespace flamingo::kernels
