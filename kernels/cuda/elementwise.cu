// The decoder's data-movement kernels and launchers (kernels/cuda/elementwise.h has the
// contracts). Compiled with -fmad=false: the gated add's product and sum round separately.
#include "kernels/cuda/bf16_device.cuh"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/swiglu.h"  // kElementwiseThreads, elementwise_blocks

namespace flamingo::kernels::cuda {
namespace {

__device__ __forceinline__ long long thread_index() {
  return static_cast<long long>(blockIdx.x) * kElementwiseThreads + threadIdx.x;
}

__global__ void to_bf16_kernel(const float* x, uint16_t* y, long long n) {
  const long long i = thread_index();
  if (i < n) y[i] = round_bf16(x[i]);
}

__global__ void gather_kernel(const uint16_t* table, long long width, const int32_t* index,
                              long long n, uint16_t* out) {
  const long long i = thread_index();
  if (i < n) out[i] = table[static_cast<long long>(index[i / width]) * width + i % width];
}

__global__ void scatter_kernel(const uint16_t* src, long long width, const int32_t* index,
                               long long n, uint16_t* table) {
  const long long i = thread_index();
  if (i < n) table[static_cast<long long>(index[i / width]) * width + i % width] = src[i];
}

__global__ void gated_add_kernel(uint16_t* h, const uint16_t* gate, long long gate_len,
                                 const uint16_t* y, long long n, long long d) {
  const long long i = thread_index();
  if (i >= n) return;
  const float yv = bf16_value(y[i]);
  float gy = yv;
  if (gate_len != 0) {
    gy = rounded_bf16(bf16_value(gate[gate_len == 1 ? 0 : i % d]) * yv);
  }
  h[i] = round_bf16(bf16_value(h[i]) + gy);
}

}  // namespace

void to_bf16(const float* x, uint16_t* y, int64_t n, void* stream) {
  check_elementwise(1, n, "to_bf16");
  if (n == 0) return;
  to_bf16_kernel<<<static_cast<unsigned>(elementwise_blocks(n, "to_bf16")), kElementwiseThreads, 0,
                   static_cast<cudaStream_t>(stream)>>>(x, y, n);
  check_launch("to_bf16");
}

void gather_rows(const uint16_t* table, int64_t width, const int32_t* index, int64_t rows,
                 uint16_t* out, void* stream) {
  check_elementwise(rows, width, "gather_rows");
  const int64_t n = rows * width;
  if (n == 0) return;
  gather_kernel<<<static_cast<unsigned>(elementwise_blocks(n, "gather_rows")), kElementwiseThreads,
                  0, static_cast<cudaStream_t>(stream)>>>(table, width, index, n, out);
  check_launch("gather_rows");
}

void scatter_rows(const uint16_t* src, int64_t width, const int32_t* index, int64_t rows,
                  uint16_t* table, void* stream) {
  check_elementwise(rows, width, "scatter_rows");
  const int64_t n = rows * width;
  if (n == 0) return;
  scatter_kernel<<<static_cast<unsigned>(elementwise_blocks(n, "scatter_rows")),
                   kElementwiseThreads, 0, static_cast<cudaStream_t>(stream)>>>(src, width, index,
                                                                                n, table);
  check_launch("scatter_rows");
}

void gated_add(uint16_t* h, const uint16_t* gate, int64_t gate_len, const uint16_t* y, int64_t rows,
               int64_t d, void* stream) {
  check_elementwise(rows, d, "gated_add");
  check_gate(gate_len, d);
  const int64_t n = rows * d;
  if (n == 0) return;
  gated_add_kernel<<<static_cast<unsigned>(elementwise_blocks(n, "gated_add")), kElementwiseThreads,
                     0, static_cast<cudaStream_t>(stream)>>>(h, gate, gate_len, y, n, d);
  check_launch("gated_add");
}

}  // namespace flamingo::kernels::cuda
