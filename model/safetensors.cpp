#include "model/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "model/error.h"

namespace flamingo {
namespace {

constexpr uint64_t kMaxHeaderBytes = 100u << 20;  // the format's own limit

StoredDtype parse_dtype(const std::string& s, const std::string& path, const std::string& key) {
  static const std::map<std::string, StoredDtype> kNames = {
      {"F32", StoredDtype::kF32},  {"F16", StoredDtype::kF16}, {"BF16", StoredDtype::kBF16},
      {"F64", StoredDtype::kF64},  {"I64", StoredDtype::kI64}, {"I32", StoredDtype::kI32},
      {"I16", StoredDtype::kI16},  {"I8", StoredDtype::kI8},   {"U8", StoredDtype::kU8},
      {"BOOL", StoredDtype::kBool}};
  auto it = kNames.find(s);
  if (it == kNames.end()) {
    throw Error(path + ": tensor '" + key + "' has unsupported dtype '" + s + "'");
  }
  return it->second;
}

std::string json_type_error(const std::string& path, const std::string& key,
                            const std::string& what) {
  return path + ": malformed safetensors header: tensor '" + key + "': " + what;
}

}  // namespace

const char* stored_dtype_name(StoredDtype dtype) {
  switch (dtype) {
    case StoredDtype::kF32:
      return "F32";
    case StoredDtype::kF16:
      return "F16";
    case StoredDtype::kBF16:
      return "BF16";
    case StoredDtype::kF64:
      return "F64";
    case StoredDtype::kI64:
      return "I64";
    case StoredDtype::kI32:
      return "I32";
    case StoredDtype::kI16:
      return "I16";
    case StoredDtype::kI8:
      return "I8";
    case StoredDtype::kU8:
      return "U8";
    case StoredDtype::kBool:
      return "BOOL";
  }
  return "?";
}

std::size_t stored_dtype_size(StoredDtype dtype) {
  switch (dtype) {
    case StoredDtype::kF64:
    case StoredDtype::kI64:
      return 8;
    case StoredDtype::kF32:
    case StoredDtype::kI32:
      return 4;
    case StoredDtype::kF16:
    case StoredDtype::kBF16:
    case StoredDtype::kI16:
      return 2;
    case StoredDtype::kI8:
    case StoredDtype::kU8:
    case StoredDtype::kBool:
      return 1;
  }
  return 0;
}

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
  // O_NONBLOCK: a FIFO (or a device) named like a shard must not block the load; it is refused
  // below. For regular files the flag changes nothing.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) throw Error(path + ": cannot open: " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    throw Error(path + ": cannot stat: " + std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error(path + ": not a regular file");
  }
  map_size_ = static_cast<std::size_t>(st.st_size);
  if (map_size_ < 8) {
    ::close(fd);
    throw Error(path + ": not a safetensors file (" + std::to_string(map_size_) +
                " bytes, need at least 8)");
  }
  // MAP_PRIVATE + PROT_WRITE: copy-on-write, so a tensor viewing the mapping can never write
  // through to the file.
  map_ = ::mmap(nullptr, map_size_, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (map_ == MAP_FAILED) {
    map_ = nullptr;
    throw Error(path + ": cannot mmap: " + std::strerror(errno));
  }
  const auto* bytes = static_cast<const std::byte*>(map_);
  uint64_t header_len = 0;
  std::memcpy(&header_len, bytes, 8);  // little-endian on every supported host
  if (header_len > kMaxHeaderBytes || header_len > map_size_ - 8) {
    std::string msg = path + ": header length " + std::to_string(header_len) +
                      " exceeds the file size " + std::to_string(map_size_) +
                      " (truncated or not a safetensors file)";
    ::munmap(map_, map_size_);
    map_ = nullptr;
    throw Error(msg);
  }
  const std::byte* data_start = bytes + 8 + header_len;
  const std::size_t data_size = map_size_ - 8 - header_len;
  try {
    auto header = nlohmann::json::parse(reinterpret_cast<const char*>(bytes + 8),
                                        reinterpret_cast<const char*>(data_start));
    if (!header.is_object()) throw Error(path + ": malformed safetensors header: not an object");
    for (auto& [key, value] : header.items()) {
      if (key == "__metadata__") {
        if (value.is_object()) {
          for (auto& [mk, mv] : value.items()) {
            if (mv.is_string()) metadata_[mk] = mv.get<std::string>();
          }
        }
        continue;
      }
      if (!value.is_object() || !value.contains("dtype") || !value.contains("shape") ||
          !value.contains("data_offsets")) {
        throw Error(json_type_error(path, key, "needs dtype, shape and data_offsets"));
      }
      TensorView view;
      view.name = key;
      view.file = path;
      view.dtype = parse_dtype(value["dtype"].get<std::string>(), path, key);
      for (auto& d : value["shape"]) {
        int64_t dim = d.get<int64_t>();
        if (dim < 0) throw Error(json_type_error(path, key, "negative dimension"));
        view.shape.push_back(dim);
      }
      auto offsets = value["data_offsets"];
      if (!offsets.is_array() || offsets.size() != 2) {
        throw Error(json_type_error(path, key, "data_offsets must be [begin, end]"));
      }
      uint64_t begin = offsets[0].get<uint64_t>();
      uint64_t end = offsets[1].get<uint64_t>();
      uint64_t expected = static_cast<uint64_t>(view.numel()) * stored_dtype_size(view.dtype);
      if (end < begin || end > data_size) {
        throw Error(path + ": tensor '" + key + "' data_offsets [" + std::to_string(begin) + ", " +
                    std::to_string(end) + "] exceed the data section of " +
                    std::to_string(data_size) + " bytes (truncated file?)");
      }
      if (end - begin != expected) {
        throw Error(path + ": tensor '" + key + "' has " + std::to_string(end - begin) +
                    " bytes, expected " + std::to_string(expected) + " for its dtype and shape");
      }
      view.data = data_start + begin;
      view.nbytes = end - begin;
      tensors_.emplace(key, std::move(view));
    }
  } catch (const nlohmann::json::exception& e) {
    ::munmap(map_, map_size_);
    map_ = nullptr;
    throw Error(path + ": malformed safetensors header: " + e.what());
  } catch (...) {
    ::munmap(map_, map_size_);
    map_ = nullptr;
    throw;
  }
}

SafetensorsFile::~SafetensorsFile() {
  if (map_ != nullptr) ::munmap(map_, map_size_);
}

Checkpoint Checkpoint::open(const std::string& dir) {
  namespace fs = std::filesystem;
  Checkpoint ckpt;
  ckpt.dir_ = dir;
  ckpt.files_ = std::make_shared<std::vector<std::unique_ptr<SafetensorsFile>>>();
  if (!fs::is_directory(dir)) throw Error(dir + ": checkpoint folder not found");
  const fs::path index_path = fs::path(dir) / "model.safetensors.index.json";
  if (fs::exists(index_path)) {
    std::ifstream in(index_path);
    nlohmann::json index;
    try {
      index = nlohmann::json::parse(in);
    } catch (const nlohmann::json::exception& e) {
      throw Error(index_path.string() + ": malformed JSON: " + e.what());
    }
    if (!index.contains("weight_map") || !index["weight_map"].is_object()) {
      throw Error(index_path.string() + ": missing key 'weight_map'");
    }
    std::map<std::string, SafetensorsFile*> by_file;
    for (auto& [key, file] : index["weight_map"].items()) {
      if (!file.is_string()) {
        throw Error(index_path.string() + ": weight_map['" + key + "'] is not a file name");
      }
      const std::string fname = file.get<std::string>();
      // A shard is a file of this folder, named as the hub names them: a path elsewhere
      // ("/dev/stdin", "../other/x.safetensors") is refused before anything is opened.
      if (fname.empty() || fname == "." || fname == ".." ||
          fname.find_first_of(std::string("/\0", 2)) != std::string::npos) {
        throw Error(index_path.string() + ": weight_map['" + key + "'] names '" + fname +
                    "', not a file name in the checkpoint folder");
      }
      auto it = by_file.find(fname);
      if (it == by_file.end()) {
        const fs::path shard = fs::path(dir) / fname;
        if (!fs::exists(shard)) {
          throw Error(index_path.string() + ": weight_map['" + key + "'] names missing shard '" +
                      fname + "'");
        }
        ckpt.files_->push_back(std::make_unique<SafetensorsFile>(shard.string()));
        it = by_file.emplace(fname, ckpt.files_->back().get()).first;
      }
      auto t = it->second->tensors().find(key);
      if (t == it->second->tensors().end()) {
        throw Error(it->second->path() + ": tensor '" + key +
                    "' is listed in model.safetensors.index.json but not in this shard");
      }
      ckpt.index_[key] = &t->second;
    }
    return ckpt;
  }
  std::vector<fs::path> candidates;
  if (fs::exists(fs::path(dir) / "model.safetensors")) {
    candidates.push_back(fs::path(dir) / "model.safetensors");
  } else {
    for (auto& entry : fs::directory_iterator(dir)) {
      if (entry.path().extension() == ".safetensors") candidates.push_back(entry.path());
    }
    std::sort(candidates.begin(), candidates.end());
    if (candidates.size() > 1) {
      throw Error(
          dir + ": " + std::to_string(candidates.size()) +
          " .safetensors files but no model.safetensors.index.json to say which holds what");
    }
  }
  if (candidates.empty()) {
    throw Error(dir + ": no model.safetensors.index.json or *.safetensors file found");
  }
  ckpt.files_->push_back(std::make_unique<SafetensorsFile>(candidates[0].string()));
  for (auto& [key, view] : ckpt.files_->back()->tensors()) ckpt.index_[key] = &view;
  return ckpt;
}

const TensorView* Checkpoint::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : it->second;
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> out;
  out.reserve(index_.size());
  for (auto& [k, v] : index_) out.push_back(k);
  return out;
}

}  // namespace flamingo
