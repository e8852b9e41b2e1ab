// Reader for HuggingFace safetensors checkpoints: one file or a sharded folder described by
// model.safetensors.index.json. Files are memory-mapped read-only; a tensor is a view into the
// mapping (pointer, dtype, shape) that stays valid while the SafetensorsFile (or the
// shared_ptr a caller keeps of it) lives. Torch-free: model/weights.cpp turns views into
// tensors. Immutable after open; all const methods are thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace flamingo {

enum class StoredDtype { kF32, kF16, kBF16, kF64, kI64, kI32, kI16, kI8, kU8, kBool };

const char* stored_dtype_name(StoredDtype dtype);
std::size_t stored_dtype_size(StoredDtype dtype);

struct TensorView {
  std::string name;
  StoredDtype dtype;
  std::vector<int64_t> shape;
  const std::byte* data = nullptr;  // points into the mapped file
  std::size_t nbytes = 0;
  std::string file;  // the file that holds it, for error messages
  int64_t numel() const;
};

// One memory-mapped .safetensors file.
class SafetensorsFile {
 public:
  // Throws Error naming the path for unreadable, truncated or malformed files.
  explicit SafetensorsFile(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::map<std::string, TensorView>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  std::string path_;
  void* map_ = nullptr;
  std::size_t map_size_ = 0;
  std::map<std::string, TensorView> tensors_;
  std::map<std::string, std::string> metadata_;
};

// All tensors of a checkpoint folder: model.safetensors.index.json when present (every key
// looked up through its weight_map), else model.safetensors, else the single *.safetensors.
class Checkpoint {
 public:
  // Throws Error naming the folder/file when nothing loadable is found or a shard is bad.
  static Checkpoint open(const std::string& dir);

  // nullptr when the key is absent.
  const TensorView* find(const std::string& name) const;
  std::vector<std::string> names() const;
  const std::string& dir() const { return dir_; }
  // Keeps the mappings alive for views handed out (e.g. zero-copy tensors).
  std::shared_ptr<const void> keep_alive() const { return files_; }

 private:
  std::string dir_;
  std::shared_ptr<std::vector<std::unique_ptr<SafetensorsFile>>> files_;
  std::map<std::string, const TensorView*> index_;
};

}  // namespace flamingo
