// Fused residual add + RMSNorm on an NVIDIA GPU (issue 13), bfloat16 in and out, float32
// inside, as model/layers.cpp's rms_norm computes it after the decoder's residual add:
//   s = bf16(h + delta)                       (written back to h: the new residual stream)
//   inv = 1 / sqrt(mean(s^2) + eps)            (float32, correctly rounded sqrt and divide)
//   y = bf16(weight * bf16(s * inv))
// One block of kRmsThreads threads per row. The sum of squares has a fixed order: thread t
// adds s[i]^2 (one fma each) for i = t, t + kRmsThreads, ... in increasing i; each warp's 32
// sums meet in the butterfly v = v + v[lane ^ o] (o = 16 .. 1); then warp 0 does the same over
// the warps' sums (zeros past them). rms_norm_residual_reference computes that order on the
// CPU, so a GPU result must equal it bit for bit. Torch-free: raw device pointers, a stream.
#pragma once

#include <cstdint>

namespace flamingo::kernels::cuda {

constexpr int kRmsThreads = 256;

// h, delta: [rows, d] bfloat16 bits (device); weight [d]; y [rows, d]. delta == nullptr: no
// residual add (h is only read). rows == 0 does nothing. Throws std::invalid_argument for bad
// sizes, std::runtime_error naming the CUDA error when the launch fails.
void rms_norm_residual(uint16_t* h, const uint16_t* delta, const uint16_t* weight, uint16_t* y,
                       int64_t rows, int64_t d, float eps, void* stream);

// Throws std::invalid_argument unless 0 <= rows < 2^31 and d >= 1 (both entry points check).
void check_rms_norm_sizes(int64_t rows, int64_t d);

// The same on the CPU (host pointers), the same order.
void rms_norm_residual_reference(uint16_t* h, const uint16_t* delta, const uint16_t* weight,
                                 uint16_t* y, int64_t rows, int64_t d, float eps);

}  // namespace flamingo::kernels::cuda
