// Internal to the int8 product (kernels/int8_product.cpp, kernels/amx_int8.cpp): the
// activations of one product quantized per group of 64 (the definition in
// kernels/int8_product.h), with what each path needs beside them; the weights' quantization
// at load (kernels/packed_weight.cpp). Torch-free.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/cpu_isa.h"

namespace flamingo::kernels::detail {

// What a path needs beyond q and the scales.
enum class QuantExtra {
  kNone,
  kMagnitudes,  // |q| (the vpmaddubsw paths)
  kStartSums,   // -128 x the sum of each group's q (vpdpbusd takes the weights + 128)
  kTileRows,    // q rows zero-padded to a multiple of 16 (AMX tiles of 16 rows)
};

struct QuantX {
  int64_t groups = 0, kp = 0;  // kp = groups * 64: each row zero-padded
  std::vector<int8_t> q;       // [m][kp] (kTileRows: [m rounded up to 16][kp])
  std::vector<uint8_t> a;      // [m][kp] |q| (kMagnitudes), else empty
  std::vector<int32_t> start;  // [m][groups] (kStartSums), else empty
  std::vector<float> s;        // [m][groups]
};

// x [m][k] float32 -> qx (the bits of quantize_activation_row), with AVX-512 or AVX2 as `isa`
// allows; rows in parallel on the kernel pool when large.
void quantize_rows(const float* x, int64_t m, int64_t k, QuantExtra extra, Isa isa, QuantX& qx);

// quantize_int8_row (kernels/packed_weight.h) of one weight row in groups of 64, with AVX-512 or
// AVX2 as `isa` allows: the same bits.
void quantize_weight_row(const float* w, int64_t k, int8_t* q, float* scales, Isa isa);

}  // namespace flamingo::kernels::detail
