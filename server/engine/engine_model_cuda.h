// The engine's model with the text decoder on an NVIDIA GPU (issue 13): a Pipeline for the
// tokenizer, preprocessing, vision tower and perceiver (on the CPU, as in the CPU model), and
// a CudaDecoder (model/cuda_decoder.h) holding the decoder's weights, the paged KV cache and the
// encoded images' K/V on the device. Chosen by EngineConfig::device (--device). Builds without
// nvcc have no CUDA kernels: asking for them is then an error that says so.
#pragma once

#include <memory>
#include <string>

#include "kernels/cuda/decoder_ops.h"
#include "server/engine/engine_model.h"

namespace flamingo {

// Whether this build has the CUDA kernels, and a device answers; `why` says why not.
bool cuda_decoder_available(std::string* why);

// The model for `config` whose decoder runs on `ops` (DeviceOps for a GPU; tests pass HostOps,
// the kernels' CPU references). Computes in bfloat16: config.dtype and config.weights must be
// auto or bfloat16. Throws flamingo::Error for a bad folder or a setting it cannot honour, and
// when the build has no CUDA kernels.
std::unique_ptr<EngineModel> load_cuda_engine_model(const EngineConfig& config,
                                                    std::unique_ptr<kernels::cuda::DecoderOps> ops);

// EngineConfig::device: nullptr for "cpu" (the caller loads the CPU model); the CUDA model on
// the current GPU for "cuda", and for "auto" when cuda_decoder_available(). Throws Error for
// "cuda" without CUDA kernels or a device (saying which), or an unknown device name.
std::unique_ptr<EngineModel> load_device_engine_model(const EngineConfig& config);

}  // namespace flamingo
