// The skinny bfloat16 weight product on an NVIDIA GPU (issue 13): y [m, n] float32 = x [m, k]
// W^T, x and W bfloat16 (W row-major [n, k], as a checkpoint stores it), for the few rows of a
// decode step. Built with nvcc when CMake finds it (FLAMINGO_CUDA_KERNELS); torch-free: raw
// device pointers and a stream.
//
// Summation order (fixed by k and alignment, below, so a row's bits do not depend on m, the other
// rows or the launch): one warp per output column; lane l takes the chunks of 8 consecutive K
// starting at 8 l + 256 j in increasing j (K % 8 != 0 or unaligned pointers: single K at l + 32 j),
// each element added with one float32 fma in increasing K; then the 32 lane sums are added by the
// butterfly v = v + v[lane ^ o] for o = 16, 8, 4, 2, 1. skinny_bf16_reference computes the same
// order on the CPU (std::fma), so a GPU result must equal it bit for bit.
// Which of the two orders runs depends on k and on the 16-byte alignment of the x and W base
// pointers; allocations (cudaMalloc, the caching allocators) are aligned, so for the model it
// depends on k alone: a caller that offsets x into a buffer must keep that alignment.
#pragma once

#include <cstdint>

namespace flamingo::kernels::cuda {

struct SkinnyPlan {
  int64_t blocks = 0;       // grid size: one warp per output column, kSkinnyWarps per block
  int threads = 0;          // threads per block
  bool vectorized = false;  // 16-byte loads of 8 K (k % 8 == 0 and 16-byte aligned x and W)
};
constexpr int kSkinnyWarps = 4;

// The launch for m x n x k with these pointers (host-side logic, no GPU needed). Throws
// std::invalid_argument for negative sizes or more than 2^31 - 1 rows or columns.
SkinnyPlan skinny_bf16_plan(int64_t m, int64_t n, int64_t k, const void* x, const void* w);

// Launches the product on `stream` (a cudaStream_t; nullptr: the default stream). x, w, y are
// device pointers. m == 0 or n == 0 does nothing; k == 0 writes zeros. Throws
// std::runtime_error naming the CUDA error when the launch fails.
void skinny_bf16_product(const uint16_t* x, int64_t m, const uint16_t* w, int64_t n, int64_t k,
                         float* y, void* stream);

// The same order on the CPU (host pointers), `vectorized` as the plan says.
void skinny_bf16_reference(const uint16_t* x, int64_t m, const uint16_t* w, int64_t n, int64_t k,
                           float* y, bool vectorized);

}  // namespace flamingo::kernels::cuda
