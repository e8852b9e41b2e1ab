// Turns checkpoint tensors into ATen tensors of the compute dtype, checking names and shapes.
// A tensor whose stored dtype already is the compute dtype (and is suitably aligned) is a
// zero-copy view of the memory-mapped file; others are converted once at load.
// Not thread-safe: used by one thread while a model is constructed.
#pragma once

#include <ATen/ATen.h>

#include <functional>
#include <string>
#include <vector>

#include "model/safetensors.h"

namespace flamingo {

class WeightLoader {
 public:
  using Progress = std::function<void(int64_t bytes_done, int64_t bytes_total)>;

  WeightLoader(const Checkpoint& checkpoint, at::ScalarType dtype, Progress progress = {});

  // The tensor `name` in the compute dtype. Throws Error naming the key, the expected and the
  // found shape or dtype, and the file.
  at::Tensor get(const std::string& name, std::vector<int64_t> shape);
  bool contains(const std::string& name) const { return checkpoint_.find(name) != nullptr; }
  at::ScalarType dtype() const { return dtype_; }
  int64_t bytes_loaded() const { return bytes_done_; }      // as stored in the files
  int64_t compute_bytes() const { return compute_bytes_; }  // as held in the compute dtype

 private:
  const Checkpoint& checkpoint_;
  at::ScalarType dtype_;
  Progress progress_;
  int64_t bytes_done_ = 0;
  int64_t bytes_total_ = 0;
  int64_t compute_bytes_ = 0;
};

std::string shape_string(at::IntArrayRef shape);

}  // namespace flamingo
