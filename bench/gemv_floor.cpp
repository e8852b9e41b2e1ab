#include "bench/gemv_floor.h"

#include <map>

#include "bench/step_weights.h"
#include "bench/timing.h"
#include "model/layers.h"

namespace flamingo::bench {

GemvFloor::GemvFloor(const ModelConfig& c, at::ScalarType dtype, kernels::WeightType type)
    : dtype_(dtype) {
  for (const LinearShape& s : step_linears(c)) {
    for (int64_t k = 0; k < s.count; ++k) {
      weights_.push_back(kernels::PackedWeight::from_dense(at::randn({s.out, s.in}), type));
    }
  }
}

double GemvFloor::step_seconds(int64_t batch, int64_t reps) const {
  std::map<int64_t, at::Tensor> inputs;  // by in-features
  for (const kernels::PackedWeight& w : weights_) {
    if (!inputs.count(w.cols())) {
      inputs[w.cols()] = at::rand({batch, w.cols()}, at::TensorOptions(dtype_));
    }
  }
  return median(timed_runs(reps, [&] {
    for (const kernels::PackedWeight& w : weights_) linear(inputs.at(w.cols()), w);
  }));
}

}  // namespace flamingo::bench
