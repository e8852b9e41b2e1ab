// Minimal reader/writer for NumPy .npy files (format 1.0/2.0, little-endian, C order) used by
// tests to load golden arrays and to exchange data with Python oracles. Torch-free and
// header-only. Supported dtypes: <f4, <f8, <i4, <i8, |u1, |b1. Throws std::runtime_error.
// Thread-safety: free functions without shared state.
#pragma once

#include <cstdint>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace flamingo::testing {

struct NpyArray {
  std::string dtype;  // numpy descr, e.g. "<f4"
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;  // raw C-order data

  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
  // Reinterprets the data; checks that sizeof(T) matches the dtype's item size.
  template <class T>
  const T* as() const {
    if (sizeof(T) != item_size(dtype)) {
      throw std::runtime_error("npy: dtype " + dtype + " does not have item size " +
                               std::to_string(sizeof(T)));
    }
    return reinterpret_cast<const T*>(bytes.data());
  }

  static std::size_t item_size(const std::string& descr) {
    if (descr == "<f4" || descr == "<i4") return 4;
    if (descr == "<f8" || descr == "<i8") return 8;
    if (descr == "|u1" || descr == "|b1") return 1;
    throw std::runtime_error("npy: unsupported dtype '" + descr + "'");
  }
};

namespace npy_detail {

// Value of `'key': <value>` in the header dict, up to the next top-level ',' or '}'.
inline std::string dict_value(const std::string& header, const std::string& key,
                              const std::string& path) {
  const std::string needle = "'" + key + "':";
  const std::size_t at = header.find(needle);
  if (at == std::string::npos) {
    throw std::runtime_error("npy: " + path + ": header has no '" + key + "': " + header);
  }
  std::size_t pos = at + needle.size();
  while (pos < header.size() && header[pos] == ' ') ++pos;
  int depth = 0;
  std::size_t end = pos;
  for (; end < header.size(); ++end) {
    const char ch = header[end];
    if (ch == '(' || ch == '[') ++depth;
    if (ch == ')' || ch == ']') --depth;
    if (depth <= 0 && (ch == ',' || ch == '}')) break;
  }
  while (end > pos && header[end - 1] == ' ') --end;
  return header.substr(pos, end - pos);
}

}  // namespace npy_detail

inline NpyArray load_npy(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("npy: cannot open " + path);
  std::vector<uint8_t> file((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  static const char kMagic[] = "\x93NUMPY";
  if (file.size() < 10 || std::memcmp(file.data(), kMagic, 6) != 0) {
    throw std::runtime_error("npy: " + path + ": not a .npy file");
  }
  const int major = file[6];
  std::size_t header_len = 0;
  std::size_t offset = 0;
  if (major == 1) {
    header_len = file[8] | (file[9] << 8);
    offset = 10;
  } else if (major == 2 || major == 3) {
    if (file.size() < 12) throw std::runtime_error("npy: " + path + ": truncated header");
    header_len = file[8] | (file[9] << 8) | (file[10] << 16) | (std::size_t{file[11]} << 24);
    offset = 12;
  } else {
    throw std::runtime_error("npy: " + path + ": unsupported version " + std::to_string(major));
  }
  if (offset + header_len > file.size()) {
    throw std::runtime_error("npy: " + path + ": truncated header");
  }
  const std::string header(reinterpret_cast<const char*>(file.data()) + offset, header_len);
  NpyArray arr;
  std::string descr = npy_detail::dict_value(header, "descr", path);
  if (descr.size() < 2 || descr.front() != '\'' || descr.back() != '\'') {
    throw std::runtime_error("npy: " + path + ": bad descr " + descr);
  }
  arr.dtype = descr.substr(1, descr.size() - 2);
  if (npy_detail::dict_value(header, "fortran_order", path) != "False") {
    throw std::runtime_error("npy: " + path + ": fortran_order arrays are not supported");
  }
  const std::string shape = npy_detail::dict_value(header, "shape", path);
  if (shape.size() < 2 || shape.front() != '(') {
    throw std::runtime_error("npy: " + path + ": bad shape " + shape);
  }
  std::stringstream ss(shape.substr(1));
  while (true) {
    while (ss.peek() == ' ' || ss.peek() == ',') ss.get();
    if (ss.peek() == ')' || ss.peek() == EOF) break;
    int64_t dim = 0;
    if (!(ss >> dim)) throw std::runtime_error("npy: " + path + ": bad shape " + shape);
    arr.shape.push_back(dim);
  }
  const std::size_t need = static_cast<std::size_t>(arr.numel()) * NpyArray::item_size(arr.dtype);
  const std::size_t data_at = offset + header_len;
  if (file.size() - data_at != need) {
    throw std::runtime_error("npy: " + path + ": expected " + std::to_string(need) +
                             " data bytes, found " + std::to_string(file.size() - data_at));
  }
  arr.bytes.assign(file.begin() + static_cast<std::ptrdiff_t>(data_at), file.end());
  return arr;
}

// Writes a version 1.0 .npy file.
inline void save_npy(const std::string& path, const std::string& dtype,
                     const std::vector<int64_t>& shape, const void* data) {
  std::string shape_str = "(";
  int64_t numel = 1;
  for (std::size_t i = 0; i < shape.size(); ++i) {
    shape_str += std::to_string(shape[i]) + (shape.size() == 1 || i + 1 < shape.size() ? "," : "");
    if (i + 1 < shape.size()) shape_str += " ";
    numel *= shape[i];
  }
  shape_str += ")";
  std::string header =
      "{'descr': '" + dtype + "', 'fortran_order': False, 'shape': " + shape_str + ", }";
  const std::size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header += '\n';
  std::ofstream out(path, std::ios::binary);
  if (!out) throw std::runtime_error("npy: cannot write " + path);
  out.write("\x93NUMPY\x01\x00", 8);
  const char len[2] = {static_cast<char>(header.size() & 0xff),
                       static_cast<char>((header.size() >> 8) & 0xff)};
  out.write(len, 2);
  out.write(header.data(), static_cast<std::streamsize>(header.size()));
  out.write(static_cast<const char*>(data),
            static_cast<std::streamsize>(numel * NpyArray::item_size(dtype)));
  if (!out) throw std::runtime_error("npy: failed writing " + path);
}

}  // namespace flamingo::testing
