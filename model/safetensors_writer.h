// Writer for safetensors files, streaming: the header (every tensor's name, dtype and shape,
// declared up front) is written first, then each tensor's bytes in the declared order, so a
// checkpoint larger than memory is written one tensor at a time. Tensors are laid out by
// element size, largest first, so that every tensor starts at a multiple of its element size
// (the header is padded to a multiple of 64 bytes). The file appears under its name only when
// finish() succeeds (written as NAME.partial, then renamed). Torch-free; not thread-safe.
#pragma once

#include <cstdint>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "model/safetensors.h"

namespace flamingo {

struct TensorDecl {
  std::string name;
  StoredDtype dtype;
  std::vector<int64_t> shape;
  std::size_t nbytes() const;
};

class SafetensorsWriter {
 public:
  // Throws Error naming the path when it cannot be created, or for duplicate names.
  SafetensorsWriter(std::string path, std::vector<TensorDecl> tensors,
                    const std::map<std::string, std::string>& metadata = {});
  ~SafetensorsWriter();  // an unfinished file is removed
  SafetensorsWriter(const SafetensorsWriter&) = delete;
  SafetensorsWriter& operator=(const SafetensorsWriter&) = delete;

  // The order write() expects the tensors in (largest element size first, then by name).
  const std::vector<TensorDecl>& order() const { return tensors_; }
  // The next tensor's bytes: `name` must be order()[k] for the k-th call and nbytes its size.
  void write(const std::string& name, const void* data, std::size_t nbytes);
  // Checks that every tensor was written, flushes, and renames the file into place.
  void finish();
  // Total bytes of tensor data (for index files' metadata.total_size).
  std::size_t data_bytes() const { return data_bytes_; }

 private:
  std::string path_, partial_;
  std::vector<TensorDecl> tensors_;
  std::size_t next_ = 0;
  std::size_t data_bytes_ = 0;
  std::ofstream out_;
  bool finished_ = false;
};

}  // namespace flamingo
