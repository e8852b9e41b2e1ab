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

// Bytes a weight [n, k] held as `type` takes (and one product reads): elements and scales.
int64_t packed_bytes(int64_t n, int64_t k, WeightType type, int64_t group = kInt8Group);

// A raw view of a weight [n, k] (row-major). int8: q in [-127, 127], scales [n, groups()], row
// n's group g covering k in [g * group, (g + 1) * group); group is kInt8Group.
struct WeightView {
  WeightType type = WeightType::kFloat32;
  int64_t n = 0, k = 0;
  const void* data = nullptr;  // float / uint16_t (bfloat16 bits) / int8_t
  const float* scales = nullptr;
  int64_t group = kInt8Group;
  int64_t groups() const { return (k + group - 1) / group; }
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
  // Already quantized: q int8 [n, k], scales float32 [n, ceil(k / group)].
  static PackedWeight from_int8(const at::Tensor& q, const at::Tensor& scales, int64_t group);

  bool defined() const { return data_.defined(); }
  WeightType type() const { return view_.type; }
  int64_t rows() const { return view_.n; }  // output features
  int64_t cols() const { return view_.k; }  // input features
  int64_t group() const { return view_.group; }
  const at::Tensor& data() const { return data_; }
  const at::Tensor& scales() const { return scales_; }
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
