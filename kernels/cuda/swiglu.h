// SwiGLU's gating on an NVIDIA GPU (issue 13), bfloat16 in and out, as kernels/row_ops.h's
// swiglu computes it on the CPU, with the same bits:
//   y = bf16(bf16(g / (1 + exp_float(-g))) * u)
// (exp_float: kernels/exp_float.h, the CPU's own exp; the quotient correctly rounded). Finite
// inputs give the CPU kernel's bits exactly; a NaN result is a NaN (its payload may differ).
// Elementwise: y may be g or u. Torch-free: raw device pointers, a stream.
#pragma once

#include <cstdint>

namespace flamingo::kernels::cuda {

constexpr int kElementwiseThreads = 256;

// Blocks of kElementwiseThreads for `work` items (one per thread); throws
// std::invalid_argument for work < 0 or more than 2^31 - 1 blocks.
int64_t elementwise_blocks(int64_t work, const char* what);

// g, u, y: n bfloat16 bits each (device). n == 0 does nothing. Throws std::invalid_argument
// for a bad size, std::runtime_error naming the CUDA error when the launch fails.
void swiglu(const uint16_t* g, const uint16_t* u, uint16_t* y, int64_t n, void* stream);

// The same on the CPU (host pointers).
void swiglu_reference(const uint16_t* g, const uint16_t* u, uint16_t* y, int64_t n);

}  // namespace flamingo::kernels::cuda
