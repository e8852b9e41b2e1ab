// Rotary position embedding on an NVIDIA GPU (issue 13), bfloat16, as kernels/row_ops.h's
// rotary computes it on the CPU, with the same bits: for x [T, H, D] and cos, sin [T, D],
//   y[t][h][i] = bf16(bf16(x[i] * cos[t][i]) + bf16(rot[i] * sin[t][i])),
//   rot = [-x[D/2:], x[:D/2]] (rotate_half, as LLaMA and IDEFICS apply it).
// One thread per pair (i, i + D/2), so y may be x (in place). Torch-free.
#pragma once

#include <cstdint>

namespace flamingo::kernels::cuda {

// Throws std::invalid_argument unless tokens, heads >= 0 and d is even and >= 2.
void check_rotary_sizes(int64_t tokens, int64_t heads, int64_t d);

// x, y [tokens, heads, d]; cos, sin [tokens, d] (bfloat16 bits, device). tokens or heads 0 does
// nothing. Throws std::invalid_argument for bad sizes, std::runtime_error naming the CUDA error
// when the launch fails.
void rotary(const uint16_t* x, const uint16_t* cos, const uint16_t* sin, uint16_t* y,
            int64_t tokens, int64_t heads, int64_t d, void* stream);

// The same on the CPU (host pointers).
void rotary_reference(const uint16_t* x, const uint16_t* cos, const uint16_t* sin, uint16_t* y,
                      int64_t tokens, int64_t heads, int64_t d);

}  // namespace flamingo::kernels::cuda
