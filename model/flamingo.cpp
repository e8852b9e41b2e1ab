#include "model/flamingo.h"

#include <ATen/Parallel.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>

#include "kernels/thread_pool.h"
#include "model/error.h"
#include "model/safetensors.h"

namespace flamingo {
namespace {

at::Tensor concat_rows(WeightLoader& w, const std::string& main, const std::string& extra,
                       int64_t rows, int64_t extra_rows, int64_t dim) {
  at::Tensor base = w.get(main, {rows, dim});
  if (extra_rows == 0) return base;
  return at::cat({base, w.get(extra, {extra_rows, dim})}, 0);
}

// The joined rows of two checkpoint tensors as a linear weight.
kernels::PackedWeight concat_linear(WeightLoader& w, const std::string& main,
                                    const std::string& extra, int64_t rows, int64_t extra_rows,
                                    int64_t dim) {
  if (extra_rows == 0) return w.get_linear(main, {rows, dim});
  // Row by row quantization: joining quantized parts gives the bits of quantizing the join.
  return WeightLoader::join_rows(w.get_linear(main, {rows, dim}),
                                 w.get_linear(extra, {extra_rows, dim}));
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Only bfloat16 is used as stored; float16 weights would lose mantissa bits as bfloat16.
bool is_bf16(StoredDtype d) { return d == StoredDtype::kBF16; }

// Bytes the load allocates beyond the mapped files: converted tensors and packed weights.
int64_t allocation_bytes(const Checkpoint& ckpt, at::ScalarType compute, kernels::WeightType lt) {
  int64_t total = 0;
  for (const std::string& name : ckpt.names()) {
    const TensorView& v = *ckpt.find(name);
    if (is_linear_weight(name, v)) {
      const bool as_stored =
          (lt == kernels::WeightType::kFloat32 && v.dtype == StoredDtype::kF32) ||
          (lt == kernels::WeightType::kBFloat16 && v.dtype == StoredDtype::kBF16) ||
          (lt == kernels::WeightType::kInt8 && v.dtype == StoredDtype::kI8);
      if (!as_stored) total += kernels::packed_bytes(v.shape[0], v.shape[1], lt);
    } else if (!ends_with(name, kInt8ScaleSuffix)) {  // int8 scales are used as stored
      const bool as_stored = (compute == at::kFloat && v.dtype == StoredDtype::kF32) ||
                             (compute == at::kBFloat16 && v.dtype == StoredDtype::kBF16);
      if (!as_stored) total += v.numel() * static_cast<int64_t>(at::elementSize(compute));
    }
  }
  return total;
}

// "1.23 GB (1234567890 bytes)": the exact count too, so small needs do not read "0.00 GB".
std::string gigabytes(int64_t bytes) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.2f GB (%lld bytes)", static_cast<double>(bytes) / 1e9,
                static_cast<long long>(bytes));
  return buf;
}

at::Tensor int_tensor(const std::vector<int32_t>& v) {
  return at::from_blob(const_cast<int32_t*>(v.data()), {static_cast<int64_t>(v.size())}, at::kInt)
      .clone();
}

}  // namespace

int64_t memory_available_bytes() {
  std::ifstream in("/proc/meminfo");
  std::string key, unit;
  int64_t kb = 0;
  while (in >> key >> kb >> unit) {
    if (key == "MemAvailable:") return kb * 1024;
  }
  return -1;
}

int64_t ImageKV::bytes() const {
  int64_t n = 0;
  for (const auto& [k, v] : kv) n += k.nbytes() + v.nbytes();
  return n;
}

int64_t FlamingoModel::image_kv_bytes() const {
  return 2 * config_.num_cross_layers() * config_.image_tokens() * config_.hidden_size *
         static_cast<int64_t>(at::elementSize(dtype_));
}

int64_t FlamingoModel::kv_block_bytes(int64_t block_size) const {
  return KvCache::bytes_per_block(config_, block_size, dtype_);
}

at::ScalarType FlamingoModel::auto_dtype() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("flags", 0) != 0) continue;
    std::istringstream flags(line);
    std::string f;
    while (flags >> f) {
      if (f == "avx512_bf16" || f == "amx_bf16") return at::kBFloat16;
    }
    break;
  }
  return at::kFloat;
}

void FlamingoModel::set_threads(int threads) {
  // One pool does the parallel work: LibTorch's own ops run on the calling thread, since its
  // OpenMP team and the kernel pool fought for the cores (a decode step spent 1.5-1.9x its
  // products' time with 2 ATen threads on 2 cores, 1.0-1.2x with 1). FLAMINGO_ATEN_THREADS
  // overrides it.
  const char* aten = std::getenv("FLAMINGO_ATEN_THREADS");
  at::set_num_threads(aten != nullptr ? std::max(1, std::atoi(aten)) : 1);
  kernels::set_kernel_threads(threads);  // <= 0: the cores this process may run on
}

kernels::WeightType FlamingoModel::resolve_weights(const std::string& name, at::ScalarType compute,
                                                   bool stored_bf16) {
  if (name == "auto") {
    return compute == at::kBFloat16 || stored_bf16 ? kernels::WeightType::kBFloat16
                                                   : kernels::WeightType::kFloat32;
  }
  try {
    return kernels::parse_weight_type(name);
  } catch (const std::invalid_argument&) {
    throw Error("--weights: expected auto, float32, bfloat16 or int8, found '" + name + "'");
  }
}

at::ScalarType FlamingoModel::parse_dtype(const std::string& name) {
  if (name == "auto") return auto_dtype();
  if (name == "float32" || name == "fp32") return at::kFloat;
  if (name == "bfloat16" || name == "bf16") return at::kBFloat16;
  throw Error("--dtype: expected auto, float32 or bfloat16, found '" + name + "'");
}

std::unique_ptr<FlamingoModel> FlamingoModel::load(const std::string& dir,
                                                   const ModelOptions& options) {
  std::unique_ptr<FlamingoModel> m(new FlamingoModel());
  m->dir_ = dir;
  m->config_ = load_model_config(dir);
  m->dtype_ = parse_dtype(options.dtype);
  try {
    kernels::active_isa();  // a bad FLAMINGO_KERNEL_ISA is a load error, not a failure mid-step
  } catch (const std::invalid_argument& e) {
    throw Error(e.what());
  }
  const ModelConfig& c = m->config_;
  m->context_length_ = c.context_length(options.context_length);
  Checkpoint ckpt = Checkpoint::open(dir);
  if (const TensorView* ids = ckpt.find("model.vision_model.embeddings.position_ids")) {
    // A stray buffer older checkpoints carry; transformers drops it. Only sanity-check it.
    if (ids->numel() != c.vision.num_positions()) {
      throw Error(ids->file + ": tensor 'model.vision_model.embeddings.position_ids' has " +
                  std::to_string(ids->numel()) + " entries, expected " +
                  std::to_string(c.vision.num_positions()));
    }
  }
  const TensorView* probe = ckpt.find("model.layers.0.self_attn.q_proj.weight");
  if (c.int8_quantized) {
    if (options.weights != "auto" && options.weights != "int8") {
      throw Error("--weights " + options.weights + ": " + dir +
                  " is an int8 checkpoint (config.json has a quantization_config); load it "
                  "with --weights int8 or auto, or use the checkpoint it was quantized from");
    }
    m->weight_type_ = kernels::WeightType::kInt8;
  } else {
    if (probe != nullptr && probe->dtype == StoredDtype::kI8) {
      throw Error(probe->file + ": tensor '" + probe->name +
                  "' is stored int8 but config.json has no quantization_config");
    }
    m->weight_type_ =
        resolve_weights(options.weights, m->dtype_, probe != nullptr && is_bf16(probe->dtype));
  }
  const int64_t need = allocation_bytes(ckpt, m->dtype_, m->weight_type_);
  const int64_t available =
      options.memory_limit_bytes > 0 ? options.memory_limit_bytes : memory_available_bytes();
  if (available >= 0 && need > available) {
    throw Error(std::string("--weights ") + kernels::weight_type_name(m->weight_type_) +
                " --dtype " + (m->dtype_ == at::kBFloat16 ? "bfloat16" : "float32") + ": " + dir +
                " needs about " + gigabytes(need) +
                " of memory besides the mapped checkpoint files, but only " + gigabytes(available) +
                " is available (MemAvailable)" +
                (m->weight_type_ == kernels::WeightType::kInt8
                     ? std::string("; --weights bfloat16 uses a bfloat16 checkpoint as stored")
                     : std::string("; --weights int8 holds about 1.06 bytes per weight, "
                                   "--weights bfloat16 uses a bfloat16 checkpoint as stored")));
  }
  c10::InferenceMode guard;
  WeightLoader w(ckpt, m->dtype_, m->weight_type_, options.progress);
  const int64_t d = c.hidden_size;
  m->embed_ =
      concat_rows(w, "model.embed_tokens.weight", "model.embed_tokens.additional_embedding.weight",
                  c.vocab_size, c.additional_vocab_size, d);
  if (c.tie_word_embeddings && !w.contains("lm_head.weight")) {
    m->lm_head_ = w.pack(m->embed_);
  } else {
    m->lm_head_ = concat_linear(w, "lm_head.weight", "lm_head.additional_fc.weight", c.vocab_size,
                                c.additional_vocab_size, d);
  }
  m->vision_ = std::make_unique<ClipVision>(c.vision, w, "model.vision_model");
  if (c.use_resampler) {
    m->perceiver_ = std::make_unique<PerceiverResampler>(c.perceiver, c.vision.embed_dim, w,
                                                         "model.perceiver_resampler");
  }
  for (int64_t j = 0; j < c.num_cross_layers(); ++j) {
    m->gated_.emplace_back(c, w, "model.gated_cross_attn_layers." + std::to_string(j));
  }
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    m->layers_.emplace_back(c, w, "model.layers." + std::to_string(i));
  }
  m->final_norm_ = RmsNorm(w, "model.norm", d, c.rms_norm_eps);
  m->rope_ = RotaryTables(c.head_dim(), m->context_length_, c.rope_theta);
  m->weight_bytes_ = w.compute_bytes();
  return m;
}

at::Tensor FlamingoModel::encode_vision(const at::Tensor& pixel_values) const {
  c10::InferenceMode guard;
  return vision_->forward(pixel_values);
}

at::Tensor FlamingoModel::resample(const at::Tensor& features) const {
  c10::InferenceMode guard;
  return perceiver_ ? perceiver_->forward(features) : features;
}

ImageKV FlamingoModel::image_kv(const at::Tensor& latents) const {
  c10::InferenceMode guard;
  ImageKV out;
  for (const auto& g : gated_) out.kv.push_back(g.image_kv(latents));
  return out;
}

std::vector<ImageKV> FlamingoModel::encode_images(const at::Tensor& pixel_values) const {
  c10::InferenceMode guard;
  std::vector<ImageKV> out;
  // One image at a time: LibTorch's batched matrix products (attention in the vision tower and
  // the perceiver) take other paths for other batch sizes, and an image's K/V must be the same
  // whichever images it is encoded with. The linear layers would be batch-invariant anyway.
  for (int64_t i = 0; i < pixel_values.size(0); ++i) {
    at::Tensor latents = resample(encode_vision(pixel_values.narrow(0, i, 1)));
    out.push_back(image_kv(latents[0]));
  }
  return out;
}

at::Tensor FlamingoModel::forward(const FlatBatch& b, KvCache& cache,
                                  const std::vector<const ImageKV*>& images,
                                  const DebugHook& hook) const {
  c10::InferenceMode guard;
  const ModelConfig& c = config_;
  const int64_t t = b.num_tokens();
  if (t == 0) return at::empty({0, c.total_vocab()}, at::kFloat);
  if (static_cast<int64_t>(b.positions.size()) != t || static_cast<int64_t>(b.slots.size()) != t ||
      static_cast<int64_t>(b.seq_of_token.size()) != t ||
      static_cast<int64_t>(b.image_of_token.size()) != t) {
    throw Error("forward: FlatBatch fields must all have one entry per token");
  }
  // Token rows grouped by image, and bounds on every index the kernels will follow.
  std::map<int32_t, std::vector<int64_t>> rows_by_image;
  std::vector<int32_t> context_lens(t);
  for (int64_t i = 0; i < t; ++i) {
    if (b.token_ids[i] < 0 || b.token_ids[i] >= c.total_vocab()) {
      throw Error("forward: token id " + std::to_string(b.token_ids[i]) +
                  " has no row in the model (vocabulary " + std::to_string(c.total_vocab()) + ")");
    }
    if (b.positions[i] < 0 || b.positions[i] >= context_length_) {
      throw Error("forward: position " + std::to_string(b.positions[i]) +
                  " exceeds the context length " + std::to_string(context_length_));
    }
    if (b.slots[i] < 0 || b.slots[i] >= cache.num_blocks() * cache.block_size()) {
      throw Error("forward: KV slot " + std::to_string(b.slots[i]) + " outside the cache");
    }
    const int32_t img = b.image_of_token[i];
    if (img >= static_cast<int32_t>(images.size())) {
      throw Error("forward: token " + std::to_string(i) + " names image " + std::to_string(img) +
                  " of " + std::to_string(images.size()));
    }
    if (img >= 0) rows_by_image[img].push_back(i);
    context_lens[i] = b.positions[i] + 1;
  }
  ImageGroups groups;
  std::vector<int64_t> all_rows;
  for (auto& [img, rows] : rows_by_image) {
    groups.image.push_back(img);
    groups.begin.push_back(static_cast<int64_t>(all_rows.size()));
    all_rows.insert(all_rows.end(), rows.begin(), rows.end());
  }
  groups.begin.push_back(static_cast<int64_t>(all_rows.size()));
  groups.rows = at::tensor(all_rows, at::kLong);
  int64_t max_blocks = 1;
  for (const auto& table : b.block_tables) {
    max_blocks = std::max<int64_t>(max_blocks, static_cast<int64_t>(table.size()));
  }
  at::Tensor tables = at::zeros({b.num_seqs(), max_blocks}, at::kInt);
  for (int64_t s = 0; s < b.num_seqs(); ++s) {
    auto* row = tables.data_ptr<int32_t>() + s * max_blocks;
    std::copy(b.block_tables[s].begin(), b.block_tables[s].end(), row);
  }
  AttentionMetadata meta;
  at::Tensor pos = int_tensor(b.positions).to(at::kLong);
  meta.cos = rope_.cos.index_select(0, pos).to(dtype_);
  meta.sin = rope_.sin.index_select(0, pos).to(dtype_);
  meta.slots = at::tensor(b.slots, at::kLong);
  meta.block_tables = tables;
  meta.seq_of_token = int_tensor(b.seq_of_token);
  meta.context_lens = int_tensor(context_lens);

  at::Tensor h = embed_.index_select(0, int_tensor(b.token_ids).to(at::kLong));
  if (hook) hook("embeddings", h);
  std::vector<const std::pair<at::Tensor, at::Tensor>*> layer_kv(images.size());
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    if (hook) hook("layer_input." + std::to_string(i), h);
    if (c.has_cross_layer(i)) {
      const int64_t j = i / c.cross_layer_interval;
      for (size_t u = 0; u < images.size(); ++u) {
        layer_kv[u] = images[u] != nullptr ? &images[u]->kv[j] : nullptr;
      }
      for (int32_t img : groups.image) {
        if (layer_kv[img] == nullptr) {
          throw Error("forward: image " + std::to_string(img) + " has no K/V");
        }
      }
      h = gated_[j].forward(h, layer_kv, groups);
      if (hook) hook("gated." + std::to_string(i), h);
    }
    h = layers_[i].forward(h, meta, cache.keys(i), cache.values(i));
  }
  std::vector<int64_t> logit_rows(b.logit_rows.begin(), b.logit_rows.end());
  for (int64_t r : logit_rows) {
    if (r < 0 || r >= t) throw Error("forward: logit row " + std::to_string(r) + " out of range");
  }
  at::Tensor sel = h.index_select(0, at::tensor(logit_rows, at::kLong));
  at::Tensor normed = final_norm_(sel);
  if (hook) hook("final_norm", final_norm_(h));
  return linear(normed, lm_head_).to(at::kFloat);
}

}  // namespace flamingo
