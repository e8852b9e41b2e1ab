#include "bench/step_weights.h"

namespace flamingo::bench {

std::vector<LinearShape> step_linears(const ModelConfig& c) {
  const int64_t h = c.hidden_size, i = c.intermediate_size;
  const int64_t layers = c.num_hidden_layers, gated = c.num_cross_layers();
  return {
      {h, h, 4 * layers},      // decoder q, k, v, o
      {i, h, 2 * layers},      // decoder gate, up
      {h, i, layers},          // decoder down
      {h, h, 2 * gated},       // gated q, o
      {i, h, 2 * gated},       // gated gate, up
      {h, i, gated},           // gated down
      {c.total_vocab(), h, 1}  // lm_head ++ additional_fc
  };
}

const char* const kStepBytesFormula =
    "bytes/elem x [layers x (4h^2 + 3hi) + gated_layers x (2h^2 + 3hi) + (vocab+additional) x h]"
    " + int8 scales (4 bytes per 64 weights) (image K/V, KV cache, norms and embedding rows not "
    "counted)";

int64_t step_weight_bytes(const ModelConfig& c, kernels::WeightType type) {
  int64_t n = 0;
  for (const LinearShape& s : step_linears(c)) {
    n += kernels::packed_bytes(s.out, s.in, type) * s.count;
  }
  return n;
}

// Flops of the linear products of one image's encoding: vision tower over its positions,
// perceiver (latents attend to positions + latents), each gated layer's K and V of the latents.
double encode_linear_flops(const ModelConfig& c) {
  const double e = c.vision.embed_dim, i = c.vision.intermediate_size;
  const double pos = c.vision.num_positions();
  double macs = c.vision.num_hidden_layers * (4 * e * e + 2 * e * i) * pos;
  double latents = pos;
  if (c.use_resampler) {
    const PerceiverConfig& p = c.perceiver;
    const double inner = p.resampler_n_heads * p.resampler_head_dim, l = p.resampler_n_latents;
    macs += p.resampler_depth *
            (e * inner * l + 2 * e * inner * (pos + l) + inner * e * l + 2 * e * 4 * e * l);
    latents = l;
  }
  macs += c.num_cross_layers() * 2 * e * c.hidden_size * latents;
  return 2 * macs;
}

int64_t step_weight_elements(const ModelConfig& c) {
  int64_t n = 0;
  for (const LinearShape& s : step_linears(c)) n += s.out * s.in * s.count;
  return n;
}

}  // namespace flamingo::bench
