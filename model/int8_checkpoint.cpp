#include "model/int8_checkpoint.h"

#include <ATen/ATen.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <vector>

#include "kernels/packed_weight.h"
#include "model/config.h"
#include "model/error.h"
#include "model/safetensors.h"
#include "model/safetensors_writer.h"
#include "model/weights.h"

namespace flamingo {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

bool float_dtype(StoredDtype d) {
  return d == StoredDtype::kF32 || d == StoredDtype::kF16 || d == StoredDtype::kBF16 ||
         d == StoredDtype::kF64;
}

// Quantized as FlamingoModel's load does (WeightLoader::pack: float64 narrowed first).
kernels::PackedWeight quantize(const TensorView& v) {
  at::Tensor t = at::from_blob(const_cast<std::byte*>(v.data), v.shape,
                               at::TensorOptions(stored_scalar_type(v)));
  if (t.scalar_type() == at::kDouble) t = t.to(at::kFloat);
  return kernels::PackedWeight::from_dense(t, kernels::WeightType::kInt8);
}

json read_json(const fs::path& path) {
  std::ifstream in(path);
  if (!in) throw Error(path.string() + ": cannot read");
  try {
    return json::parse(in);
  } catch (const json::exception& e) {
    throw Error(path.string() + ": malformed JSON: " + e.what());
  }
}

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
  out.close();
  if (!out) throw Error(path.string() + ": write failed");
}

// What the output tensor `name` is made of.
struct Source {
  const TensorView* view;
  enum Role { kCopy, kScales, kQuantized } role;
};

}  // namespace

QuantizeSummary write_int8_checkpoint(const std::string& src, const std::string& out,
                                      const std::function<void(int64_t, int64_t)>& progress) {
  const ModelConfig config = load_model_config(src);
  if (config.int8_quantized) {
    throw Error(src + ": already an int8 checkpoint (config.json has a quantization_config)");
  }
  if (fs::exists(out) && !(fs::is_directory(out) && fs::is_empty(out))) {
    throw Error("--out " + out + ": exists and is not an empty folder");
  }
  const Checkpoint ckpt = Checkpoint::open(src);
  std::map<std::string, std::vector<const TensorView*>> shards;  // source file -> its tensors
  QuantizeSummary summary;
  for (const std::string& name : ckpt.names()) {
    const TensorView* v = ckpt.find(name);
    shards[v->file].push_back(v);
    summary.bytes_in += static_cast<int64_t>(v->nbytes);
  }
  fs::create_directories(out);
  json weight_map = json::object();
  int64_t done = 0;
  for (const auto& [file, views] : shards) {
    const std::string shard = fs::path(file).filename().string();
    std::vector<TensorDecl> decls;
    std::map<std::string, Source> sources;
    for (const TensorView* v : views) {
      if (is_linear_weight(v->name, *v) && float_dtype(v->dtype)) {
        const int64_t groups = (v->shape[1] + kInt8QuantGroup - 1) / kInt8QuantGroup;
        const std::string scale_name = v->name + kInt8ScaleSuffix;
        if (ckpt.find(scale_name) != nullptr) {
          throw Error(v->file + ": tensor '" + scale_name +
                      "' already exists: cannot store the "
                      "scales of '" +
                      v->name + "' under that name");
        }
        decls.push_back({v->name, StoredDtype::kI8, v->shape});
        decls.push_back({scale_name, StoredDtype::kF32, {v->shape[0], groups}});
        sources[v->name] = {v, Source::kQuantized};
        sources[scale_name] = {v, Source::kScales};
        ++summary.weights_quantized;
      } else {
        decls.push_back({v->name, v->dtype, v->shape});
        sources[v->name] = {v, Source::kCopy};
      }
    }
    SafetensorsWriter writer((fs::path(out) / shard).string(), std::move(decls),
                             {{"format", "pt"}});
    // The writer takes float32 scales before int8 weights: a weight's int8 copy waits in
    // `pending` from its scales to its own turn.
    std::map<std::string, std::pair<at::Tensor, at::Tensor>> pending;  // q, scales
    for (const TensorDecl& d : writer.order()) {
      weight_map[d.name] = shard;
      const Source& s = sources.at(d.name);
      switch (s.role) {
        case Source::kCopy:
          writer.write(d.name, s.view->data, s.view->nbytes);
          done += static_cast<int64_t>(s.view->nbytes);
          break;
        case Source::kScales: {
          const auto& [q, scales] = pending[s.view->name] = quantize(*s.view).int8_rows();
          writer.write(d.name, scales.data_ptr(), scales.nbytes());
          break;
        }
        case Source::kQuantized: {
          auto it = pending.find(d.name);
          writer.write(d.name, it->second.first.data_ptr(), it->second.first.nbytes());
          pending.erase(it);
          done += static_cast<int64_t>(s.view->nbytes);
          break;
        }
      }
      WeightLoader::release_pages(*s.view);
      if (progress) progress(done, summary.bytes_in);
    }
    writer.finish();
    summary.bytes_out += static_cast<int64_t>(writer.data_bytes());
    ++summary.shards;
  }
  const fs::path index = fs::path(src) / "model.safetensors.index.json";
  if (fs::exists(index)) {
    const json doc = {{"metadata", {{"total_size", summary.bytes_out}}},
                      {"weight_map", weight_map}};
    write_text(fs::path(out) / index.filename(), doc.dump(2) + "\n");
  }
  for (const auto& entry : fs::directory_iterator(src)) {
    const fs::path& p = entry.path();
    if (!entry.is_regular_file() || p.extension() == ".safetensors" || p == index ||
        p.filename() == "config.json" || p.extension() == ".partial") {
      continue;
    }
    fs::copy_file(p, fs::path(out) / p.filename(), fs::copy_options::overwrite_existing);
  }
  // config.json last: a folder without it does not load, so an interrupted run is not mistaken
  // for a checkpoint.
  json cfg = read_json(fs::path(src) / "config.json");
  cfg["quantization_config"] = {
      {"quant_method", kInt8QuantMethod},
      {"bits", 8},
      {"group_size", kInt8QuantGroup},
      {"symmetric", true},
      {"scale_dtype", "float32"},
      {"scale_suffix", kInt8ScaleSuffix},
      {"modules", "every 2-D *.weight tensor except embeddings"},
  };
  write_text(fs::path(out) / "config.json", cfg.dump(2) + "\n");
  return summary;
}

}  // namespace flamingo
