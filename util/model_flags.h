// The flags flamingo-server and flamingo-cli share because they mean the same in both: how the
// model is loaded (--model, --dtype, --weights, --device, --threads, --context-length) and the
// image limits (--max-image-bytes, --max-image-pixels). Defined once here, so their help text,
// choices and ranges are literally the same. Header-only, torch-free, gRPC-free.
#pragma once

#include <cstdint>
#include <string>

#include "util/flag_table.h"

namespace flamingo::flags {

// Adds --model, --dtype, --weights, --device, --threads and --context-length to any table whose
// args have model_dir, dtype, weights, device (strings), threads (int32) and context_length
// (int64).
template <typename Table>
void add_model_flags(Table& t) {
  using Args = typename Table::args_type;
  t.text("--model", "checkpoint folder (HF layout); default: the bundled tiny model",
         &Args::model_dir)
      .meta("DIR");
  t.choice("--dtype", "compute dtype (auto: bfloat16 if the CPU has avx512_bf16/AMX, else float32)",
           &Args::dtype, {"auto", "float32", "bfloat16"});
  t.choice("--weights",
           "how linear weights are held (auto: bfloat16 when the compute dtype or the checkpoint "
           "is bfloat16, else float32)",
           &Args::weights, {"auto", "float32", "bfloat16", "int8"});
  t.choice("--device",
           "where the text decoder runs: cpu; cuda (an NVIDIA GPU through the project's CUDA "
           "kernels, bfloat16; not yet run on a GPU, docs/GPU.md); auto (cuda when this build has "
           "the CUDA kernels and a GPU answers, else cpu)",
           &Args::device, {"cpu", "cuda", "auto"});
  t.integer("--threads", "CPU threads for the model; 0 = one per core", &Args::threads, 0, 1024);
  t.integer("--context-length",
            "tokens per sequence; 0 = the checkpoint's (config.json max_position_embeddings, "
            "else 2048)",
            &Args::context_length, 0, 1 << 20);
}

// Adds --max-image-bytes and --max-image-pixels storing into `bytes` and `pixels` (int64
// fields: member pointers or flags::nested).
template <typename Table, typename Bytes, typename Pixels>
void add_image_limit_flags(Table& t, Bytes bytes, Pixels pixels) {
  t.integer("--max-image-bytes", "encoded bytes per image (PNG/JPEG file size)", bytes, 1, 1 << 30);
  t.integer("--max-image-pixels", "width x height per image, as its header declares", pixels, 1,
            int64_t{9'000'000'000'000'000'000});
}

// --tls-cert and --tls-key come together: the message when only one is given, else "".
inline std::string tls_pair_error(const std::string& cert, const std::string& key) {
  if (cert.empty() == key.empty()) return "";
  return cert.empty() ? "--tls-key needs --tls-cert" : "--tls-cert needs --tls-key";
}

}  // namespace flamingo::flags
