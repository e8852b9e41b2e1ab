// How a linear layer's weight is held for kernels/weight_product: float32, bfloat16 or int8
// (symmetric, one float32 scale per output row and group of kInt8Group consecutive K), as
// tensors (zero-copy views of a memory-mapped checkpoint where possible) with a raw view for
// the kernels; int8 quantization.
//
// Thread-safe: a PackedWeight is immutable after construction.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <string>
#include <utility>

namespace flamingo::kernels {

enum class WeightType { kFloat32, kBFloat16, kInt8 };

const char* weight_type_name(WeightType type);  // "float32", "bfloat16", "int8"
// Accepts float32/fp32, bfloat16/bf16, int8; throws std::invalid_argument naming the value.
WeightType parse_weight_type(const std::string& name);
int64_t weight_type_size(WeightType type);  // bytes per element (scales not counted)

// int8 group size along K. 64: the scales cost 4/64 = 6% over the int8 bytes (1.06 bytes per
// weight), every K of the IDEFICS family (64 * n: 1280, 4096, 5120, 11008, ...) splits into
// whole groups, and one outlier spoils the resolution of 64 weights, not a whole row.
constexpr int64_t kInt8Group = 64;

// How int8 weights are laid out in memory (packed at load; a saved int8 checkpoint holds the
// plain row-major q [n, k] and scales [n, groups]). Output rows in blocks of 16 (the last one
// padded with zero rows), K in groups of 64 (the last one padded with zeros): block b's group g
// is kInt8BlockBytes at data + (b * groups + g) * kInt8BlockBytes, and within it the 4 weights
// of row r at K = 64 g + 4 j .. 64 g + 4 j + 3 are the 4 bytes at 64 j + 4 r. Their scales: 16
// floats at scales + (b * groups + g) * 16 (0 for padding rows). One 64-byte line is one K quad
// of 16 rows: a zmm for vpdpbusd against a broadcast quad of x, and the 1 KB is an AMX B tile.
constexpr int64_t kInt8BlockRows = 16;
constexpr int64_t kInt8BlockBytes = kInt8BlockRows * kInt8Group;
// Offset of weight (row, col) in the packed layout of a weight with `groups` groups.
inline int64_t int8_packed_offset(int64_t row, int64_t col, int64_t groups) {
  return (row / kInt8BlockRows * groups + col / kInt8Group) * kInt8BlockBytes +
         col % kInt8Group / 4 * 64 + row % kInt8BlockRows * 4 + col % 4;
}
inline int64_t int8_packed_scale_offset(int64_t row, int64_t group_index, int64_t groups) {
  return (row / kInt8BlockRows * groups + group_index) * kInt8BlockRows + row % kInt8BlockRows;
}

// Bytes a weight [n, k] held as `type` takes (and one product reads): elements and scales
// (int8: padded to whole blocks and groups).
int64_t packed_bytes(int64_t n, int64_t k, WeightType type, int64_t group = kInt8Group);

// A raw view of a weight [n, k]: row-major for float32 / bfloat16; int8 in the packed layout
// above (q in [-127, 127]), row n's group g covering k in [g * group, (g + 1) * group).
struct WeightView {
  WeightType type = WeightType::kFloat32;
  int64_t n = 0, k = 0;
  const void* data = nullptr;     // float / uint16_t (bfloat16 bits) / int8_t (packed)
  const float* scales = nullptr;  // int8: packed
  int64_t group = kInt8Group;
  int64_t groups() const { return (k + group - 1) / group; }
  int64_t blocks() const { return (n + kInt8BlockRows - 1) / kInt8BlockRows; }
};

// Symmetric int8 quantization of one row of k weights in groups of `group`: scale = max|w| /
// 127 per group (0 for an all-zero group), q = round-to-nearest-even(w / scale).
void quantize_int8_row(const float* w, int64_t k, int64_t group, int8_t* q, float* scales);

// A weight held for the product: its tensors (zero-copy views of a memory-mapped checkpoint
// where possible) and their raw view.
class PackedWeight {
 public:
  PackedWeight() = default;
  // w [n, k] float32 / bfloat16 / float16 -> held as `type`. A tensor already in the type is
  // used as it is (no copy; it stays alive through this object). To int8 it is quantized one
  // row at a time (no float32 copy of the whole weight).
  static PackedWeight from_dense(const at::Tensor& w, WeightType type, int64_t group = kInt8Group);
  // Already quantized: q int8 [n, k], scales float32 [n, ceil(k / group)] (row-major, as a
  // saved int8 checkpoint holds them); copied into the packed layout.
  static PackedWeight from_int8(const at::Tensor& q, const at::Tensor& scales, int64_t group);
  // The rows of a and then of b (same type and columns).
  static PackedWeight join_rows(const PackedWeight& a, const PackedWeight& b);

  bool defined() const { return data_.defined(); }
  WeightType type() const { return view_.type; }
  int64_t rows() const { return view_.n; }  // output features
  int64_t cols() const { return view_.k; }  // input features
  int64_t group() const { return view_.group; }
  // The held tensors: the weight [n, k] (float32 / bfloat16), or the packed int8 bytes and
  // scales (1-D; layout above).
  const at::Tensor& data() const { return data_; }
  const at::Tensor& scales() const { return scales_; }
  // int8 only: q int8 [n, k] and scales float32 [n, groups], row-major copies (for saving).
  std::pair<at::Tensor, at::Tensor> int8_rows() const;
  const WeightView& view() const { return view_; }
  // Bytes one product reads: the weight and its scales.
  int64_t bytes() const;
  // float32 [n, k]: the values the kernel multiplies by (for references and tests).
  at::Tensor dequantize() const;

 private:
  at::Tensor data_, scales_;
  WeightView view_;
};

}  // namespace flamingo::kernels
