#include "model/safetensors_writer.h"

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <set>

#include "model/error.h"

namespace flamingo {

std::size_t TensorDecl::nbytes() const {
  std::size_t n = stored_dtype_size(dtype);
  for (int64_t d : shape) n *= static_cast<std::size_t>(d);
  return n;
}

SafetensorsWriter::SafetensorsWriter(std::string path, std::vector<TensorDecl> tensors,
                                     const std::map<std::string, std::string>& metadata)
    : path_(std::move(path)), partial_(path_ + ".partial"), tensors_(std::move(tensors)) {
  std::stable_sort(tensors_.begin(), tensors_.end(), [](const TensorDecl& a, const TensorDecl& b) {
    const std::size_t ea = stored_dtype_size(a.dtype), eb = stored_dtype_size(b.dtype);
    return ea != eb ? ea > eb : a.name < b.name;
  });
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::set<std::string> names;
  for (const TensorDecl& t : tensors_) {
    if (!names.insert(t.name).second) {
      throw Error(path_ + ": tensor '" + t.name + "' declared twice");
    }
    header[t.name] = {{"dtype", stored_dtype_name(t.dtype)},
                      {"shape", t.shape},
                      {"data_offsets", {data_bytes_, data_bytes_ + t.nbytes()}}};
    data_bytes_ += t.nbytes();
  }
  std::string text = header.dump();
  text.append((64 - (8 + text.size()) % 64) % 64, ' ');
  out_.open(partial_, std::ios::binary | std::ios::trunc);
  if (!out_) throw Error(partial_ + ": cannot create file");
  const uint64_t len = text.size();
  out_.write(reinterpret_cast<const char*>(&len), 8);
  out_.write(text.data(), static_cast<std::streamsize>(text.size()));
  if (!out_) throw Error(partial_ + ": write failed");
}

SafetensorsWriter::~SafetensorsWriter() {
  if (!finished_) {
    out_.close();
    std::remove(partial_.c_str());
  }
}

void SafetensorsWriter::write(const std::string& name, const void* data, std::size_t nbytes) {
  if (next_ >= tensors_.size() || tensors_[next_].name != name) {
    throw Error(path_ + ": tensor '" + name + "' written out of order (expected '" +
                (next_ < tensors_.size() ? tensors_[next_].name : std::string("nothing more")) +
                "')");
  }
  if (nbytes != tensors_[next_].nbytes()) {
    throw Error(path_ + ": tensor '" + name + "' has " + std::to_string(nbytes) +
                " bytes, declared " + std::to_string(tensors_[next_].nbytes()));
  }
  out_.write(static_cast<const char*>(data), static_cast<std::streamsize>(nbytes));
  if (!out_) throw Error(partial_ + ": write failed (disk full?)");
  ++next_;
}

void SafetensorsWriter::finish() {
  if (next_ != tensors_.size()) {
    throw Error(path_ + ": " + std::to_string(tensors_.size() - next_) +
                " declared tensor(s) not written, first '" + tensors_[next_].name + "'");
  }
  out_.close();
  if (!out_) throw Error(partial_ + ": write failed (disk full?)");
  if (std::rename(partial_.c_str(), path_.c_str()) != 0) {
    throw Error(path_ + ": cannot rename " + partial_ + " into place");
  }
  finished_ = true;
}

}  // namespace flamingo
