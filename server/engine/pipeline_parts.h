// Pieces of the engine's models that are built on a Pipeline, shared by the CPU model
// (engine_model_pipeline.cpp) and the one with the decoder on a GPU (engine_model_cuda.cpp).
#pragma once

#include <ATen/ATen.h>

#include <span>

#include "model/pipeline.h"
#include "server/engine/engine.h"
#include "server/engine/job.h"

namespace flamingo {

// What the pipeline's model is (family through image_bytes, as FlamingoModel holds it).
ModelDescription describe_pipeline(const Pipeline& pipeline);

// The images' preprocessed pixels as one float32 tensor [N, 3, S, S] (S = image_size). Throws
// Error for an image of another size.
at::Tensor pixel_batch(std::span<const ImageInput* const> images, int64_t image_size);

}  // namespace flamingo
