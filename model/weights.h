// Turns checkpoint tensors into ATen tensors of the compute dtype, and linear weights into
// kernels::PackedWeight of the chosen weight type, checking names and shapes. A tensor whose
// stored dtype already is the wanted one (and is suitably aligned) is a zero-copy view of the
// memory-mapped file; others are converted once at load (int8: quantized row by row, never
// widened to a float32 copy of the whole weight). The int8 linear weights of a quantized
// checkpoint (docs/QUANTIZATION.md) are used as stored too.
// Not thread-safe: used by one thread while a model is constructed.
#pragma once

#include <ATen/ATen.h>

#include <functional>
#include <string>
#include <vector>

#include "kernels/weight_product.h"
#include "model/safetensors.h"

namespace flamingo {

class WeightLoader {
 public:
  using Progress = std::function<void(int64_t bytes_done, int64_t bytes_total)>;

  WeightLoader(const Checkpoint& checkpoint, at::ScalarType dtype,
               kernels::WeightType linear_type = kernels::WeightType::kFloat32,
               Progress progress = {});

  // The tensor `name` in the compute dtype. Throws Error naming the key, the expected and the
  // found shape or dtype, and the file.
  at::Tensor get(const std::string& name, std::vector<int64_t> shape);
  // The tensor `name` as stored (float types only), zero-copy where aligned.
  at::Tensor get_stored(const std::string& name, std::vector<int64_t> shape);
  // The linear weight `name` [out, in] held as linear_type().
  kernels::PackedWeight get_linear(const std::string& name, std::vector<int64_t> shape);
  // A dense [out, in] weight (e.g. tied embeddings) held as linear_type().
  kernels::PackedWeight pack(const at::Tensor& dense);
  // The rows of a, then b (same type and K): e.g. lm_head and its additional rows.
  static kernels::PackedWeight join_rows(const kernels::PackedWeight& a,
                                         const kernels::PackedWeight& b);
  kernels::WeightType linear_type() const { return linear_type_; }
  bool contains(const std::string& name) const { return checkpoint_.find(name) != nullptr; }
  at::ScalarType dtype() const { return dtype_; }
  int64_t bytes_loaded() const { return bytes_done_; }      // as stored in the files
  int64_t compute_bytes() const { return compute_bytes_; }  // as held in the compute dtype

  // A tensor copied or converted at load no longer needs its pages of the mapped file: they
  // leave this process's resident set (the file stays in the page cache), so an int8 load of a
  // bf16 checkpoint does not hold both.
  static void release_pages(const TensorView& view);

 private:
  // An int8-stored linear weight and its "<name>_scale" (an int8 checkpoint), zero-copy.
  kernels::PackedWeight get_int8(const TensorView& view, const std::vector<int64_t>& shape);

  const Checkpoint& checkpoint_;
  at::ScalarType dtype_;
  kernels::WeightType linear_type_;
  Progress progress_;
  int64_t bytes_done_ = 0;
  int64_t bytes_total_ = 0;
  int64_t compute_bytes_ = 0;
};

std::string shape_string(at::IntArrayRef shape);

// The ATen dtype of a float checkpoint tensor (F32, F16, BF16, F64); Error naming the tensor
// and the file for any other.
at::ScalarType stored_scalar_type(const TensorView& view);

// The checkpoint tensors the model holds as linear weights (kernels::PackedWeight): the 2-D
// "*.weight" tensors other than embeddings. `flamingo-cli quantize` stores exactly these int8.
bool is_linear_weight(const std::string& name, const TensorView& view);

}  // namespace flamingo
