// flamingo-bench's weight-product floor: random weights of exactly a decode step's linears,
// held as the model holds them, one per linear (so nothing stays in cache between uses);
// step_seconds is the summed time of flamingo::linear (the product every model linear uses)
// over all of them with a [batch, in] input: the floor a decode step of `batch` tokens should
// approach.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

#include "kernels/packed_weight.h"
#include "model/config.h"

namespace flamingo::bench {

class GemvFloor {
 public:
  GemvFloor(const ModelConfig& c, at::ScalarType dtype, kernels::WeightType type);
  // Median of `reps` passes over every weight (after one untimed pass), in seconds.
  double step_seconds(int64_t batch, int64_t reps) const;

 private:
  at::ScalarType dtype_;
  std::vector<kernels::PackedWeight> weights_;
};

}  // namespace flamingo::bench
