// The weights one decode step of FlamingoModel reads, from the config alone: the text-side
// linears (shapes and counts), their bytes in a weight type (int8 scales included), their
// multiply-adds per token, and the flops of one image's encoding. flamingo-bench sets its
// timings against these.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/packed_weight.h"
#include "model/config.h"

namespace flamingo::bench {

// The text-side linears every decode step runs (weights [out, in]), `count` of each.
struct LinearShape {
  int64_t out, in, count;
};

std::vector<LinearShape> step_linears(const ModelConfig& c);
// How step_weight_bytes counts, for reports.
extern const char* const kStepBytesFormula;
int64_t step_weight_bytes(const ModelConfig& c, kernels::WeightType type);
// Multiply-adds of the step's linears per token (2 flops each).
int64_t step_weight_elements(const ModelConfig& c);
// Flops of the linear products of one image's encoding.
double encode_linear_flops(const ModelConfig& c);

}  // namespace flamingo::bench
