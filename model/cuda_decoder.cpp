#include "model/cuda_decoder.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "kernels/cuda/bf16_bits.h"

namespace flamingo {

using kernels::cuda::DecoderOps;
using kernels::cuda::round_bf16;

CudaDecoderConfig CudaDecoderConfig::from(const ModelConfig& m, int64_t max_positions,
                                          int64_t num_blocks, int64_t block_size) {
  CudaDecoderConfig c;
  c.hidden = m.hidden_size;
  c.heads = m.num_attention_heads;
  c.intermediate = m.intermediate_size;
  c.layers = m.num_hidden_layers;
  c.cross_interval = m.cross_layer_interval;
  c.vocab = m.total_vocab();
  c.image_dim = m.vision.embed_dim;
  c.eps = static_cast<float>(m.rms_norm_eps);
  c.qk_norms = m.qk_layer_norms;
  c.gate_len = m.alpha_type == "float" ? 1 : m.hidden_size;
  c.rope_theta = m.rope_theta;
  c.max_positions = max_positions;
  c.num_blocks = num_blocks;
  c.block_size = block_size;
  return c;
}

// Buffers of one call, carved from the decoder's arena (256-byte aligned). What does not fit is
// allocated on its own and released on return, and the arena grows to the call's whole need
// for the next call: after the first step of a shape, a step allocates nothing.
class CudaDecoder::Scratch {
 public:
  Scratch(DecoderOps& ops, Arena& arena) : ops_(ops), arena_(arena) {}
  ~Scratch() {
    for (void* p : held_) ops_.release(p);
    if (used_ > arena_.bytes) {
      if (arena_.base != nullptr) ops_.release(arena_.base);
      arena_.base = nullptr;
      arena_.bytes = 0;
      try {
        arena_.base = ops_.alloc(used_);
        arena_.bytes = used_;
      } catch (const std::exception&) {
        // Out of memory: the next call allocates its buffers one by one again.
      }
    }
  }
  template <typename T>
  T* get(int64_t count) {
    const int64_t bytes = (count * static_cast<int64_t>(sizeof(T)) + 255) / 256 * 256;
    const int64_t at = used_;
    used_ += bytes;
    if (used_ <= arena_.bytes) return reinterpret_cast<T*>(static_cast<char*>(arena_.base) + at);
    held_.push_back(ops_.alloc(bytes));
    return static_cast<T*>(held_.back());
  }
  template <typename T>
  T* put(const std::vector<T>& v) {
    T* p = get<T>(static_cast<int64_t>(v.size()));
    ops_.upload(p, v.data(), static_cast<int64_t>(v.size() * sizeof(T)));
    return p;
  }

 private:
  DecoderOps& ops_;
  Arena& arena_;
  int64_t used_ = 0;
  std::vector<void*> held_;
};

namespace {

void require(bool ok, const std::string& what) {
  if (!ok) throw std::invalid_argument("cuda decoder: " + what);
}

}  // namespace

uint16_t* CudaDecoder::load(const CudaDecoderWeights& weights, const std::string& name,
                            std::vector<int64_t> shape) {
  const std::vector<uint16_t> host = weights(name, shape);
  int64_t count = 1;
  for (int64_t s : shape) count *= s;
  require(static_cast<int64_t>(host.size()) == count,
          "weight '" + name + "' has " + std::to_string(host.size()) + " values, expected " +
              std::to_string(count));
  auto* p = static_cast<uint16_t*>(ops_.alloc(count * 2));
  owned_.push_back(p);
  ops_.upload(p, host.data(), count * 2);
  weight_bytes_ += count * 2;
  return p;
}

CudaDecoder::Mlp CudaDecoder::load_mlp(const CudaDecoderWeights& w, const std::string& prefix) {
  return {load(w, prefix + ".gate", {c_.intermediate, c_.hidden}),
          load(w, prefix + ".up", {c_.intermediate, c_.hidden}),
          load(w, prefix + ".down", {c_.hidden, c_.intermediate})};
}

CudaDecoder::CudaDecoder(const CudaDecoderConfig& config, DecoderOps& ops,
                         const CudaDecoderWeights& w)
    : c_(config), ops_(ops) {
  require(c_.hidden > 0 && c_.heads > 0 && c_.hidden % c_.heads == 0 && c_.head_dim() % 2 == 0,
          "hidden " + std::to_string(c_.hidden) + " must split into an even head_dim over " +
              std::to_string(c_.heads) + " heads");
  require(c_.layers > 0 && c_.cross_interval > 0 && c_.vocab > 0 && c_.intermediate > 0 &&
              c_.image_dim > 0 && c_.max_positions > 0 && c_.num_blocks > 0 && c_.block_size > 0,
          "sizes must be positive");
  require(c_.gate_len == 1 || c_.gate_len == c_.hidden, "gate_len must be 1 or hidden");
  const int64_t d = c_.hidden, hd = c_.head_dim();
  embed_ = load(w, "embed", {c_.vocab, d});
  lm_head_ = load(w, "lm_head", {c_.vocab, d});
  final_norm_ = load(w, "final_norm", {d});
  for (int64_t j = 0; j < c_.gated_layers(); ++j) {
    const std::string p = "gated." + std::to_string(j);
    Gated g{};
    g.input_norm = load(w, p + ".input_norm", {d});
    g.post_norm = load(w, p + ".post_norm", {d});
    g.q = load(w, p + ".q", {d, d});
    g.k = load(w, p + ".k", {d, c_.image_dim});
    g.v = load(w, p + ".v", {d, c_.image_dim});
    g.o = load(w, p + ".o", {d, d});
    if (c_.qk_norms) {
      g.q_norm = load(w, p + ".q_norm", {hd});
      g.k_norm = load(w, p + ".k_norm", {hd});
    }
    g.alpha_attn = load(w, p + ".alpha_attn", {c_.gate_len});
    g.alpha_dense = load(w, p + ".alpha_dense", {c_.gate_len});
    g.mlp = load_mlp(w, p);
    gated_.push_back(g);
  }
  for (int64_t i = 0; i < c_.layers; ++i) {
    const std::string p = "layers." + std::to_string(i);
    Layer l{};
    l.input_norm = load(w, p + ".input_norm", {d});
    l.post_norm = load(w, p + ".post_norm", {d});
    l.q = load(w, p + ".q", {d, d});
    l.k = load(w, p + ".k", {d, d});
    l.v = load(w, p + ".v", {d, d});
    l.o = load(w, p + ".o", {d, d});
    l.mlp = load_mlp(w, p);
    layers_.push_back(l);
  }
  // Rotary tables as IdeficsEmbedding builds them (float32), rounded to bfloat16.
  std::vector<uint16_t> cos(c_.max_positions * hd), sin(c_.max_positions * hd);
  for (int64_t t = 0; t < c_.max_positions; ++t) {
    for (int64_t i = 0; i < hd / 2; ++i) {
      const float e = static_cast<float>(2 * i) / static_cast<float>(hd);
      const float inv = 1.f / std::pow(static_cast<float>(c_.rope_theta), e);
      const float f = static_cast<float>(t) * inv;
      cos[t * hd + i] = cos[t * hd + i + hd / 2] = round_bf16(std::cos(f));
      sin[t * hd + i] = sin[t * hd + i + hd / 2] = round_bf16(std::sin(f));
    }
  }
  for (auto* table : {&cos_, &sin_}) {
    *table = static_cast<uint16_t*>(ops_.alloc(c_.max_positions * hd * 2));
    owned_.push_back(*table);
  }
  ops_.upload(cos_, cos.data(), c_.max_positions * hd * 2);
  ops_.upload(sin_, sin.data(), c_.max_positions * hd * 2);
  for (int64_t i = 0; i < c_.layers; ++i) {
    for (auto* pool : {&k_cache_, &v_cache_}) {
      pool->push_back(static_cast<uint16_t*>(ops_.alloc(c_.num_blocks * c_.block_size * d * 2)));
      owned_.push_back(pool->back());
    }
  }
}

CudaDecoder::~CudaDecoder() {
  for (void* p : owned_) ops_.release(p);
  if (arena_.base != nullptr) ops_.release(arena_.base);
}

void CudaDecoder::linear(Scratch& s, const uint16_t* x, int64_t m, const uint16_t* w, int64_t n,
                         int64_t k, uint16_t* y) {
  float* f = s.get<float>(m * n);
  ops_.product(x, m, w, n, k, f);
  ops_.to_bf16(f, y, m * n);
}

// h += gate x down(swiglu(gate(x), up(x))) with x = RMSNorm(h) (gate nullptr: 1).
void CudaDecoder::mlp(Scratch& s, const Mlp& w, uint16_t* h, const uint16_t* norm,
                      const uint16_t* gate, int64_t t) {
  const int64_t d = c_.hidden, in = c_.intermediate;
  uint16_t* x = s.get<uint16_t>(t * d);
  ops_.rms_norm(h, nullptr, norm, x, t, d, c_.eps);
  uint16_t *g = s.get<uint16_t>(t * in), *u = s.get<uint16_t>(t * in);
  linear(s, x, t, w.gate, in, d, g);
  linear(s, x, t, w.up, in, d, u);
  ops_.swiglu(g, u, g, t * in);
  uint16_t* y = s.get<uint16_t>(t * d);
  linear(s, g, t, w.down, d, in, y);
  ops_.gated_add(h, gate, gate != nullptr ? c_.gate_len : 0, y, t, d);
}

CudaDecoderImage CudaDecoder::image_kv(const std::vector<uint16_t>& latents, int64_t len) {
  require(len > 0 && static_cast<int64_t>(latents.size()) == len * c_.image_dim,
          "latents must be [len, " + std::to_string(c_.image_dim) + "] with len > 0");
  Scratch s(ops_, arena_);
  const uint16_t* x = s.put(latents);
  CudaDecoderImage img;
  img.len = len;
  try {
    for (const Gated& g : gated_) {
      img.k.push_back(static_cast<uint16_t*>(ops_.alloc(len * c_.hidden * 2)));
      img.v.push_back(static_cast<uint16_t*>(ops_.alloc(len * c_.hidden * 2)));
      uint16_t *k = img.k.back(), *v = img.v.back();
      uint16_t* kp = c_.qk_norms ? s.get<uint16_t>(len * c_.hidden) : k;
      linear(s, x, len, g.k, c_.hidden, c_.image_dim, kp);
      linear(s, x, len, g.v, c_.hidden, c_.image_dim, v);
      if (c_.qk_norms) {
        ops_.rms_norm(kp, nullptr, g.k_norm, k, len * c_.heads, c_.head_dim(), c_.eps);
      }
    }
    ops_.synchronize();
  } catch (...) {
    release_image(img);  // nothing half-made is handed out
    throw;
  }
  return img;
}

void CudaDecoder::release_image(CudaDecoderImage& image) {
  for (uint16_t* p : image.k) ops_.release(p);
  for (uint16_t* p : image.v) ops_.release(p);
  image = CudaDecoderImage{};
}

std::vector<float> CudaDecoder::forward(const FlatBatch& b,
                                        const std::vector<const CudaDecoderImage*>& images) {
  const int64_t t = b.num_tokens(), d = c_.hidden, hd = c_.head_dim(), heads = c_.heads;
  require(t > 0, "empty batch");
  require(static_cast<int64_t>(b.positions.size()) == t &&
              static_cast<int64_t>(b.seq_of_token.size()) == t &&
              static_cast<int64_t>(b.slots.size()) == t &&
              static_cast<int64_t>(b.image_of_token.size()) == t,
          "batch arrays must have one entry per token");
  int64_t max_blocks = 1;
  for (const auto& table : b.block_tables) {
    max_blocks = std::max<int64_t>(max_blocks, static_cast<int64_t>(table.size()));
    for (int32_t blk : table) {
      require(blk >= 0 && blk < c_.num_blocks,
              "block " + std::to_string(blk) + " outside the cache");
    }
  }
  std::vector<int32_t> slots(t), ctx(t), tables(b.num_seqs() * max_blocks, 0);
  for (int64_t s = 0; s < b.num_seqs(); ++s) {
    std::copy(b.block_tables[s].begin(), b.block_tables[s].end(), tables.begin() + s * max_blocks);
  }
  int64_t max_ctx = 0;
  bool any_image = false;
  for (int64_t i = 0; i < t; ++i) {
    require(b.token_ids[i] >= 0 && b.token_ids[i] < c_.vocab,
            "token id " + std::to_string(b.token_ids[i]) + " outside [0, " +
                std::to_string(c_.vocab) + ")");
    require(b.positions[i] >= 0 && b.positions[i] < c_.max_positions,
            "position " + std::to_string(b.positions[i]) + " exceeds the context length " +
                std::to_string(c_.max_positions));
    require(b.slots[i] >= 0 && b.slots[i] < c_.num_blocks * c_.block_size,
            "KV slot " + std::to_string(b.slots[i]) + " outside the cache");
    require(b.seq_of_token[i] >= 0 && b.seq_of_token[i] < b.num_seqs(),
            "token " + std::to_string(i) + " names sequence " + std::to_string(b.seq_of_token[i]));
    const int32_t img = b.image_of_token[i];
    require(img < static_cast<int32_t>(images.size()) && (img < 0 || images[img] != nullptr),
            "token " + std::to_string(i) + " names image " + std::to_string(img) + " of " +
                std::to_string(images.size()));
    const int64_t blocks_needed = b.positions[i] / c_.block_size + 1;
    require(blocks_needed <= static_cast<int64_t>(b.block_tables[b.seq_of_token[i]].size()),
            "token " + std::to_string(i) + " at position " + std::to_string(b.positions[i]) +
                " needs " + std::to_string(blocks_needed) + " blocks in its table");
    any_image = any_image || img >= 0;
    slots[i] = static_cast<int32_t>(b.slots[i]);
    ctx[i] = b.positions[i] + 1;
    max_ctx = std::max<int64_t>(max_ctx, ctx[i]);
  }
  for (int32_t r : b.logit_rows) {
    require(r >= 0 && r < t, "logit row " + std::to_string(r) + " out of range");
  }
  Scratch s(ops_, arena_);
  const int32_t* ids = s.put(b.token_ids);
  const int32_t* pos = s.put(b.positions);
  const int32_t* slot = s.put(slots);
  const int32_t* seq = s.put(b.seq_of_token);
  const int32_t* lens = s.put(ctx);
  const int32_t* table = s.put(tables);
  const int32_t* group = s.put(b.image_of_token);
  uint16_t* h = s.get<uint16_t>(t * d);
  ops_.gather_rows(embed_, d, ids, t, h);
  uint16_t *cos = s.get<uint16_t>(t * hd), *sin = s.get<uint16_t>(t * hd);
  ops_.gather_rows(cos_, hd, pos, t, cos);
  ops_.gather_rows(sin_, hd, pos, t, sin);
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd)));
  uint16_t *x = s.get<uint16_t>(t * d), *q = s.get<uint16_t>(t * d), *k = s.get<uint16_t>(t * d),
           *v = s.get<uint16_t>(t * d), *a = s.get<uint16_t>(t * d), *o = s.get<uint16_t>(t * d);
  for (int64_t i = 0; i < c_.layers; ++i) {
    if (i % c_.cross_interval == 0) {
      const Gated& g = gated_[i / c_.cross_interval];
      if (any_image) {
        // Every row's q; rows that see no image keep a zero attention output (as the CPU model).
        ops_.rms_norm(h, nullptr, g.input_norm, x, t, d, c_.eps);
        linear(s, x, t, g.q, d, d, c_.qk_norms ? k : q);  // k: free until the decoder layer
        if (c_.qk_norms) ops_.rms_norm(k, nullptr, g.q_norm, q, t * heads, hd, c_.eps);
        std::vector<const uint16_t*> kp(images.size()), vp(images.size());
        std::vector<int32_t> len(images.size(), 0);
        int64_t max_len = 0;
        for (size_t u = 0; u < images.size(); ++u) {
          if (images[u] == nullptr) continue;
          kp[u] = images[u]->k[i / c_.cross_interval];
          vp[u] = images[u]->v[i / c_.cross_interval];
          len[u] = static_cast<int32_t>(images[u]->len);
          max_len = std::max<int64_t>(max_len, images[u]->len);
        }
        ops_.zero(a, t * d * 2);
        ops_.cross_attention(q, t, heads, hd, group, s.put(kp), s.put(vp), s.put(len), max_len,
                             scale, a);
        linear(s, a, t, g.o, d, d, o);
        ops_.gated_add(h, g.alpha_attn, c_.gate_len, o, t, d);
      }
      mlp(s, g.mlp, h, g.post_norm, g.alpha_dense, t);
    }
    const Layer& l = layers_[i];
    ops_.rms_norm(h, nullptr, l.input_norm, x, t, d, c_.eps);
    linear(s, x, t, l.q, d, d, q);
    linear(s, x, t, l.k, d, d, k);
    linear(s, x, t, l.v, d, d, v);
    ops_.rotary(q, cos, sin, q, t, heads, hd);
    ops_.rotary(k, cos, sin, k, t, heads, hd);
    ops_.scatter_rows(k, d, slot, t, k_cache_[i]);
    ops_.scatter_rows(v, d, slot, t, v_cache_[i]);
    ops_.paged_attention(q, t, heads, hd, k_cache_[i], v_cache_[i], c_.block_size, table,
                         max_blocks, seq, lens, max_ctx, scale, a);
    linear(s, a, t, l.o, d, d, o);
    ops_.gated_add(h, nullptr, 0, o, t, d);
    mlp(s, l.mlp, h, l.post_norm, nullptr, t);
  }
  const int64_t rows = static_cast<int64_t>(b.logit_rows.size());
  std::vector<float> logits(rows * c_.vocab);
  if (rows == 0) return logits;
  uint16_t *sel = s.get<uint16_t>(rows * d), *normed = s.get<uint16_t>(rows * d);
  ops_.gather_rows(h, d, s.put(b.logit_rows), rows, sel);
  ops_.rms_norm(sel, nullptr, final_norm_, normed, rows, d, c_.eps);
  // The logits rounded to bfloat16 like every product's result (so are FlamingoModel's).
  uint16_t* out = s.get<uint16_t>(rows * c_.vocab);
  linear(s, normed, rows, lm_head_, c_.vocab, d, out);
  std::vector<uint16_t> bits(rows * c_.vocab);
  ops_.download(bits.data(), out, rows * c_.vocab * 2);
  for (size_t i = 0; i < bits.size(); ++i) logits[i] = kernels::cuda::bf16_value(bits[i]);
  return logits;
}

}  // namespace flamingo
