// `flamingo-cli quantize`: writes an int8 copy of an IDEFICS checkpoint folder, so that loading
// with --weights int8 maps the quantized weights instead of quantizing at every start. The
// format (docs/QUANTIZATION.md): the same hub layout and shard names; every linear weight
// "X.weight" (weights.h: is_linear_weight) stored as I8 [out, in] plus "X.weight_scale" F32
// [out, ceil(in / 64)], quantized exactly as at load (kernels::PackedWeight, so the reloaded
// model gives the same bits); every other tensor and file as in the source; config.json gains
// a quantization_config. Written shard by shard, one tensor's int8 copy in memory at a time.
// Torch-free header.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace flamingo {

struct QuantizeSummary {
  int64_t weights_quantized = 0;  // linear weights stored int8
  int64_t bytes_in = 0;           // tensor bytes of the source
  int64_t bytes_out = 0;          // tensor bytes written
  int64_t shards = 0;
};

// Throws Error naming the folder, file or tensor: src not a loadable checkpoint or already
// int8, out not empty, a write failure. On failure the partial output stays for inspection
// without a config.json, so it cannot be loaded by mistake.
QuantizeSummary write_int8_checkpoint(
    const std::string& src, const std::string& out,
    const std::function<void(int64_t bytes_done, int64_t bytes_total)>& progress = {});

}  // namespace flamingo
