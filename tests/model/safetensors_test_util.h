// Helpers of the safetensors reader's tests (safetensors_test.cpp: single files;
// checkpoint_test.cpp: folders): little-endian byte writers, writing a file from a header and
// data, and expecting a one-line flamingo::Error. Header-only.
#pragma once

#include <gtest/gtest.h>

#include <bit>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "model/error.h"

namespace flamingo::safetensors_testing {

using nlohmann::json;
using Bytes = std::vector<unsigned char>;

static_assert(std::endian::native == std::endian::little, "the tests read LE data in place");

// Little-endian byte writers.
inline void put_u16(Bytes& b, uint16_t v) {
  b.push_back(v & 0xff);
  b.push_back(v >> 8);
}
inline void put_u32(Bytes& b, uint32_t v) {
  for (int i = 0; i < 4; ++i) b.push_back((v >> (8 * i)) & 0xff);
}
inline void put_u64(Bytes& b, uint64_t v) {
  for (int i = 0; i < 8; ++i) b.push_back((v >> (8 * i)) & 0xff);
}

inline void write_bytes(const std::string& path, const Bytes& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

// A safetensors file: u64 LE header length, the header text, then `data`.
inline void write_safetensors(const std::string& path, const std::string& header,
                              const Bytes& data) {
  Bytes b;
  put_u64(b, header.size());
  b.insert(b.end(), header.begin(), header.end());
  b.insert(b.end(), data.begin(), data.end());
  write_bytes(path, b);
}

// One F32 tensor "name" of shape [n] holding `values` (bit patterns), alone in a file.
void write_f32_file(const std::string& path, const std::string& name,
                    std::initializer_list<uint32_t> bits) {
  Bytes data;
  for (uint32_t v : bits) put_u32(data, v);
  write_safetensors(path,
                    R"({")" + name + R"(": {"dtype": "F32", "shape": [)" +
                        std::to_string(bits.size()) + R"(], "data_offsets": [0, )" +
                        std::to_string(data.size()) + "]}}",
                    data);
}

template <typename T>
T read_at(const TensorView& v, size_t i) {
  T out;
  std::memcpy(&out, v.data + i * sizeof(T), sizeof(T));  // data may be unaligned
  return out;
}

float f32_of_bits(uint32_t bits) { return std::bit_cast<float>(bits); }

// Expects `fn` to throw a flamingo::Error with a one-line message containing every needle.
template <typename Fn>
inline std::string expect_error(Fn fn, std::initializer_list<std::string> needles) {
  try {
    fn();
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "multi-line message: " << msg;
    for (const std::string& n : needles) {
      EXPECT_NE(msg.find(n), std::string::npos) << "'" << n << "' missing from: " << msg;
    }
    return msg;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected flamingo::Error, got: " << e.what();
    return {};
  }
  ADD_FAILURE() << "expected flamingo::Error";
  return {};
}

}  // namespace flamingo::safetensors_testing
