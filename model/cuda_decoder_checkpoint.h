// CudaDecoder's weights (model/cuda_decoder.h) read from an IDEFICS checkpoint folder by the
// names transformers gives them, as FlamingoModel loads them for --dtype bfloat16: bfloat16
// tensors as stored, float32 and float16 rounded to bfloat16 (nearest even); the additional
// embedding and lm_head rows joined below the main ones (a tied lm_head is the embedding);
// gates tanh(bf16(alpha)) rounded. Torch-free.
#pragma once

#include "model/config.h"
#include "model/cuda_decoder.h"
#include "model/safetensors.h"

namespace flamingo {

// The returned function reads from `checkpoint`, which must outlive it. It throws Error naming
// the tensor for a missing one or a wrong shape or dtype.
CudaDecoderWeights cuda_decoder_weights(const Checkpoint& checkpoint, const ModelConfig& config);

}  // namespace flamingo
