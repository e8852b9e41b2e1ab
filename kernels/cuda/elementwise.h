// The decoder's small data-movement ops on an NVIDIA GPU (issue 13), bfloat16 as the CPU model
// computes them (model/llama_decoder.cpp, model/gated_cross_attention.cpp): a product's float32
// result rounded to bfloat16, rows gathered from a table (embeddings, rotary rows) or scattered
// into one (a step's K/V into the paged cache), and the (gated) residual add. Elementwise, one
// thread per element. Torch-free: raw device pointers, a stream; each has a CPU reference
// (kernels/cuda/elementwise_reference.cpp) that the GPU equals bit for bit.
#pragma once

#include <cstdint>

namespace flamingo::kernels::cuda {

// y[i] = bf16(x[i]) (nearest even).
void to_bf16(const float* x, uint16_t* y, int64_t n, void* stream);
void to_bf16_reference(const float* x, uint16_t* y, int64_t n);

// out[r] = table[index[r]] for r < rows, rows of `width` elements.
void gather_rows(const uint16_t* table, int64_t width, const int32_t* index, int64_t rows,
                 uint16_t* out, void* stream);
void gather_rows_reference(const uint16_t* table, int64_t width, const int32_t* index, int64_t rows,
                           uint16_t* out);

// table[index[r]] = src[r] for r < rows (indices distinct).
void scatter_rows(const uint16_t* src, int64_t width, const int32_t* index, int64_t rows,
                  uint16_t* table, void* stream);
void scatter_rows_reference(const uint16_t* src, int64_t width, const int32_t* index, int64_t rows,
                            uint16_t* table);

// h[r][i] = bf16(h[r][i] + bf16(g x y[r][i])) over rows x d, g = gate[0] (gate_len 1),
// gate[i] (gate_len d) or 1 (gate_len 0: the plain residual add, h = bf16(h + y)).
void gated_add(uint16_t* h, const uint16_t* gate, int64_t gate_len, const uint16_t* y, int64_t rows,
               int64_t d, void* stream);
void gated_add_reference(uint16_t* h, const uint16_t* gate, int64_t gate_len, const uint16_t* y,
                         int64_t rows, int64_t d);

// Throws std::invalid_argument naming `what` for negative sizes or a gate_len other than 0, 1
// or d (both entry points check).
void check_elementwise(int64_t rows, int64_t width, const char* what);
void check_gate(int64_t gate_len, int64_t d);

}  // namespace flamingo::kernels::cuda
