#include "model/cuda_decoder_checkpoint.h"

#include <cmath>
#include <cstring>
#include <map>

#include "kernels/cuda/bf16_bits.h"
#include "model/error.h"

namespace flamingo {
namespace {

using kernels::cuda::bf16_value;
using kernels::cuda::round_bf16;

float half_value(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h >> 15) << 31;
  const int exp = (h >> 10) & 0x1f;
  const uint32_t man = h & 0x3ff;
  float f;
  if (exp == 0) {
    f = std::ldexp(static_cast<float>(man), -24);  // zero or subnormal
  } else if (exp == 31) {
    f = man == 0 ? INFINITY : NAN;
  } else {
    f = std::ldexp(static_cast<float>(man | 0x400), exp - 25);
  }
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  u |= sign;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// The tensor `name` as bfloat16 values (count elements, any shape of that many).
std::vector<uint16_t> read_bf16(const Checkpoint& ckpt, const std::string& name, int64_t count) {
  const TensorView* t = ckpt.find(name);
  if (t == nullptr) throw Error("checkpoint " + ckpt.dir() + " has no tensor '" + name + "'");
  if (t->numel() != count) {
    throw Error(t->file + ": tensor '" + name + "' has " + std::to_string(t->numel()) +
                " elements, expected " + std::to_string(count));
  }
  std::vector<uint16_t> out(count);
  switch (t->dtype) {
    case StoredDtype::kBF16:
      std::memcpy(out.data(), t->data, count * 2);
      break;
    case StoredDtype::kF32:
      for (int64_t i = 0; i < count; ++i) {
        float f;
        std::memcpy(&f, t->data + i * 4, 4);
        out[i] = round_bf16(f);
      }
      break;
    case StoredDtype::kF16:
      for (int64_t i = 0; i < count; ++i) {
        uint16_t h;
        std::memcpy(&h, t->data + i * 2, 2);
        out[i] = round_bf16(half_value(h));
      }
      break;
    default:
      throw Error(t->file + ": tensor '" + name + "' is " + stored_dtype_name(t->dtype) +
                  "; expected F32, BF16 or F16");
  }
  return out;
}

std::vector<uint16_t> joined(const Checkpoint& ckpt, const std::string& main,
                             const std::string& extra, int64_t rows, int64_t extra_rows,
                             int64_t dim) {
  std::vector<uint16_t> v = read_bf16(ckpt, main, rows * dim);
  if (extra_rows > 0) {
    const std::vector<uint16_t> e = read_bf16(ckpt, extra, extra_rows * dim);
    v.insert(v.end(), e.begin(), e.end());
  }
  return v;
}

// "layers.3.q" -> {"model.layers.3", "q"}.
std::pair<std::string, std::string> split(const std::string& name, const std::string& group,
                                          const std::string& prefix) {
  const size_t dot = name.find('.', group.size() + 1);
  return {prefix + name.substr(group.size(), dot - group.size()), name.substr(dot + 1)};
}

const std::map<std::string, std::string> kLayer = {
    {"input_norm", ".input_layernorm.weight"}, {"post_norm", ".post_attention_layernorm.weight"},
    {"q", ".self_attn.q_proj.weight"},         {"k", ".self_attn.k_proj.weight"},
    {"v", ".self_attn.v_proj.weight"},         {"o", ".self_attn.o_proj.weight"},
    {"gate", ".mlp.gate_proj.weight"},         {"up", ".mlp.up_proj.weight"},
    {"down", ".mlp.down_proj.weight"}};
const std::map<std::string, std::string> kGated = {
    {"input_norm", ".input_layernorm.weight"},
    {"post_norm", ".post_attention_layernorm.weight"},
    {"q", ".cross_attn.q_proj.weight"},
    {"k", ".cross_attn.k_proj.weight"},
    {"v", ".cross_attn.v_proj.weight"},
    {"o", ".cross_attn.o_proj.weight"},
    {"q_norm", ".cross_attn.q_layer_norm.weight"},
    {"k_norm", ".cross_attn.k_layer_norm.weight"},
    {"gate", ".mlp.gate_proj.weight"},
    {"up", ".mlp.up_proj.weight"},
    {"down", ".mlp.down_proj.weight"},
    {"alpha_attn", ".alpha_cross_attn"},
    {"alpha_dense", ".alpha_dense"}};

}  // namespace

CudaDecoderWeights cuda_decoder_weights(const Checkpoint& ckpt, const ModelConfig& c) {
  return [&ckpt, c](const std::string& name, const std::vector<int64_t>& shape) {
    int64_t count = 1;
    for (int64_t s : shape) count *= s;
    const int64_t d = c.hidden_size;
    if (name == "embed" ||
        (name == "lm_head" && c.tie_word_embeddings && ckpt.find("lm_head.weight") == nullptr)) {
      return joined(ckpt, "model.embed_tokens.weight",
                    "model.embed_tokens.additional_embedding.weight", c.vocab_size,
                    c.additional_vocab_size, d);
    }
    if (name == "lm_head") {
      return joined(ckpt, "lm_head.weight", "lm_head.additional_fc.weight", c.vocab_size,
                    c.additional_vocab_size, d);
    }
    if (name == "final_norm") return read_bf16(ckpt, "model.norm.weight", count);
    const bool gated = name.rfind("gated.", 0) == 0;
    const auto [prefix, part] = gated ? split(name, "gated", "model.gated_cross_attn_layers")
                                      : split(name, "layers", "model.layers");
    const auto& table = gated ? kGated : kLayer;
    const auto it = table.find(part);
    if (it == table.end()) throw Error("cuda decoder: no checkpoint tensor for '" + name + "'");
    std::vector<uint16_t> v = read_bf16(ckpt, prefix + it->second, count);
    if (part == "alpha_attn" || part == "alpha_dense") {
      for (uint16_t& a : v) a = round_bf16(std::tanh(bf16_value(a)));
    }
    return v;
  };
}

}  // namespace flamingo
