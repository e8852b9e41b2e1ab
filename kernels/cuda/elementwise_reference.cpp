// Host-side parts of kernels/cuda/elementwise.h: size checks and the CPU references.
#include <cstring>
#include <stdexcept>
#include <string>

#include "kernels/cuda/bf16_bits.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/swiglu.h"  // elementwise_blocks

namespace flamingo::kernels::cuda {

void check_elementwise(int64_t rows, int64_t width, const char* what) {
  if (rows < 0 || width < 0) {
    throw std::invalid_argument(std::string(what) + ": negative size (rows=" +
                                std::to_string(rows) + " width=" + std::to_string(width) + ")");
  }
  if (width > 0 && rows > (int64_t{1} << 62) / width) {
    throw std::invalid_argument(std::string(what) + ": rows x width overflows");
  }
  elementwise_blocks(rows * width, what);
}

void check_gate(int64_t gate_len, int64_t d) {
  if (gate_len != 0 && gate_len != 1 && gate_len != d) {
    throw std::invalid_argument("gated_add: gate_len must be 0, 1 or d=" + std::to_string(d) +
                                ", got " + std::to_string(gate_len));
  }
}

void to_bf16_reference(const float* x, uint16_t* y, int64_t n) {
  check_elementwise(1, n, "to_bf16");
  for (int64_t i = 0; i < n; ++i) y[i] = round_bf16(x[i]);
}

void gather_rows_reference(const uint16_t* table, int64_t width, const int32_t* index, int64_t rows,
                           uint16_t* out) {
  check_elementwise(rows, width, "gather_rows");
  for (int64_t r = 0; r < rows; ++r) {
    std::memcpy(out + r * width, table + static_cast<int64_t>(index[r]) * width, width * 2);
  }
}

void scatter_rows_reference(const uint16_t* src, int64_t width, const int32_t* index, int64_t rows,
                            uint16_t* table) {
  check_elementwise(rows, width, "scatter_rows");
  for (int64_t r = 0; r < rows; ++r) {
    std::memcpy(table + static_cast<int64_t>(index[r]) * width, src + r * width, width * 2);
  }
}

void gated_add_reference(uint16_t* h, const uint16_t* gate, int64_t gate_len, const uint16_t* y,
                         int64_t rows, int64_t d) {
  check_elementwise(rows, d, "gated_add");
  check_gate(gate_len, d);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < d; ++i) {
      const float yv = bf16_value(y[r * d + i]);
      const float g = gate_len == 0 ? 1.f : bf16_value(gate[gate_len == 1 ? 0 : i]);
      const float gy = gate_len == 0 ? yv : bf16_value(round_bf16(g * yv));
      h[r * d + i] = round_bf16(bf16_value(h[r * d + i]) + gy);
    }
  }
}

}  // namespace flamingo::kernels::cuda
