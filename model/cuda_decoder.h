// IDEFICS's text decoder (LLaMA layers, gated cross-attention before every
// cross_layer_interval-th layer, final norm, lm_head) as a sequence of the CUDA kernels' ops
// (issue 13; kernels/cuda/decoder_ops.h): on DeviceOps it runs on an NVIDIA GPU, on HostOps
// the same ops run on the CPU through the kernels' references and give the same bits. bfloat16
// throughout, as FlamingoModel computes with --dtype bfloat16 --weights bfloat16 (each
// product's float32 result rounded to bfloat16, the residual adds and gates rounded), which
// it follows within bfloat16's rounding (tests/model/cuda_decoder_test.cpp: the golden tiny
// model's logits, the greedy tokens). The vision tower and perceiver stay with FlamingoModel:
// image_kv() takes an image's latents. Torch-free. Not thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "kernels/cuda/decoder_ops.h"
#include "model/batch.h"
#include "model/config.h"

namespace flamingo {

struct CudaDecoderConfig {
  int64_t hidden = 0, heads = 0, intermediate = 0, layers = 0, cross_interval = 1;
  int64_t vocab = 0;      // embedding and lm_head rows (vocab_size + additional_vocab_size)
  int64_t image_dim = 0;  // width of the latents (the vision embed dim)
  float eps = 1e-6f;
  bool qk_norms = false;
  int64_t gate_len = 1;  // alpha_type "float": 1, "vector": hidden
  double rope_theta = 10000.0;
  int64_t max_positions = 2048;             // rotary rows; a position must be below
  int64_t num_blocks = 0, block_size = 16;  // the paged KV cache of every layer

  int64_t head_dim() const { return hidden / heads; }
  int64_t gated_layers() const { return (layers + cross_interval - 1) / cross_interval; }
  static CudaDecoderConfig from(const ModelConfig& c, int64_t max_positions, int64_t num_blocks,
                                int64_t block_size);
};

// The decoder's tensors as host bfloat16 values, asked for by these names and shapes:
//   embed, lm_head [vocab, hidden]; final_norm [hidden];
//   layers.<i>.{input_norm,post_norm} [hidden]; .{q,k,v,o} [hidden, hidden];
//   .{gate,up} [intermediate, hidden]; .down [hidden, intermediate];
//   gated.<j>.{input_norm,post_norm} [hidden]; .{q,o} [hidden, hidden]; .{k,v} [hidden,
//   image_dim]; .{q_norm,k_norm} [head_dim] (qk_norms); .{gate,up,down} as above;
//   .{alpha_attn,alpha_dense} [gate_len]: tanh(alpha), rounded to bfloat16.
// model/cuda_decoder_checkpoint.h reads them from a checkpoint folder.
using CudaDecoderWeights = std::function<std::vector<uint16_t>(const std::string& name,
                                                               const std::vector<int64_t>& shape)>;

// One image's K/V for every gated layer, [len, heads, head_dim] each, in the ops' memory.
struct CudaDecoderImage {
  std::vector<uint16_t*> k, v;
  int64_t len = 0;
};

class CudaDecoder {
 public:
  // Uploads every weight (ops' memory) and allocates the KV cache. Throws std::invalid_argument
  // for a bad config or a weight of the wrong size, std::runtime_error when memory runs out.
  CudaDecoder(const CudaDecoderConfig& config, kernels::cuda::DecoderOps& ops,
              const CudaDecoderWeights& weights);
  ~CudaDecoder();
  CudaDecoder(const CudaDecoder&) = delete;
  CudaDecoder& operator=(const CudaDecoder&) = delete;

  const CudaDecoderConfig& config() const { return c_; }
  int64_t weight_bytes() const { return weight_bytes_; }
  // The weight bytes a decode step reads: every weight but the embedding table (a step gathers
  // its rows) and the gated layers' K/V projections (run once per image, by image_kv).
  int64_t step_read_bytes() const {
    return weight_bytes_ - c_.vocab * c_.hidden * 2 -
           c_.gated_layers() * 2 * c_.hidden * c_.image_dim * 2;
  }

  // latents [len, image_dim] (host bfloat16) -> K/V for every gated layer (release with
  // release_image).
  CudaDecoderImage image_kv(const std::vector<uint16_t>& latents, int64_t len);
  void release_image(CudaDecoderImage& image);

  // One step over a flattened batch (FlamingoModel::forward's contract): writes the step's K/V
  // at batch.slots and returns float32 logits [logit_rows, vocab], row-major, on the host.
  // images[i] may be null when no token names image i. Throws std::invalid_argument naming
  // what is out of range.
  std::vector<float> forward(const FlatBatch& batch,
                             const std::vector<const CudaDecoderImage*>& images);

 private:
  struct Mlp {
    uint16_t *gate = nullptr, *up = nullptr, *down = nullptr;
  };
  struct Layer {
    uint16_t *input_norm, *post_norm, *q, *k, *v, *o;
    Mlp mlp;
  };
  struct Gated {
    uint16_t *input_norm, *post_norm, *q, *k, *v, *o, *q_norm = nullptr, *k_norm = nullptr;
    uint16_t *alpha_attn, *alpha_dense;
    Mlp mlp;
  };
  struct Arena {
    void* base = nullptr;
    int64_t bytes = 0;
  };
  class Scratch;

  uint16_t* load(const CudaDecoderWeights& weights, const std::string& name,
                 std::vector<int64_t> shape);
  Mlp load_mlp(const CudaDecoderWeights& weights, const std::string& prefix);
  // y [m, n] bfloat16 = bf16(x [m, k] W^T) through a float32 buffer.
  void linear(Scratch& s, const uint16_t* x, int64_t m, const uint16_t* w, int64_t n, int64_t k,
              uint16_t* y);
  void mlp(Scratch& s, const Mlp& w, uint16_t* h, const uint16_t* norm, const uint16_t* gate,
           int64_t t);

  CudaDecoderConfig c_;
  kernels::cuda::DecoderOps& ops_;
  std::vector<void*> owned_;
  int64_t weight_bytes_ = 0;
  uint16_t *embed_ = nullptr, *lm_head_ = nullptr, *final_norm_ = nullptr;
  uint16_t *cos_ = nullptr, *sin_ = nullptr;  // [max_positions, head_dim]
  std::vector<Layer> layers_;
  std::vector<Gated> gated_;
  std::vector<uint16_t*> k_cache_, v_cache_;  // per layer [num_blocks x block_size, hidden]
  Arena arena_;                               // a step's buffers (Scratch)
};

}  // namespace flamingo
