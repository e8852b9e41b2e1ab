#include "model/image_decode.h"

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <system_error>

#include "model/error.h"
#include "model/image_decode_internal.h"

namespace flamingo {
namespace image_detail {

std::string label(const std::string& source) { return "image '" + source + "'"; }

uint32_t read_be32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

uint16_t read_be16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }

std::string hex_bytes(const uint8_t* data, std::size_t size, std::size_t max_count) {
  std::string out;
  char buf[4];
  for (std::size_t i = 0; i < size && i < max_count; ++i) {
    std::snprintf(buf, sizeof(buf), i == 0 ? "%02x" : " %02x", data[i]);
    out += buf;
  }
  return out;
}

}  // namespace image_detail

namespace {

using namespace image_detail;

constexpr uint8_t kPngSignature[8] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
// Signature + IHDR length + "IHDR" + 13 data bytes (the CRC is checked by libpng).
constexpr std::size_t kPngHeaderBytes = 8 + 8 + 13;

// ---------------------------------------------------------------------------------------------
// Probing

ImageHeader probe_png(const uint8_t* data, std::size_t size, const std::string& source) {
  if (size < kPngHeaderBytes) {
    throw Error(label(source) + ": truncated PNG header: need " + std::to_string(kPngHeaderBytes) +
                " bytes, got " + std::to_string(size));
  }
  const uint32_t chunk_length = read_be32(data + 8);
  if (std::memcmp(data + 12, "IHDR", 4) != 0 || chunk_length != 13) {
    throw Error(label(source) + ": malformed PNG header: first chunk must be IHDR of length 13, " +
                "found '" + std::string(reinterpret_cast<const char*>(data + 12), 4) +
                "' of length " + std::to_string(chunk_length));
  }
  const uint32_t width = read_be32(data + 16);
  const uint32_t height = read_be32(data + 20);
  if (width == 0 || height == 0 || width > kPngMaxDimension || height > kPngMaxDimension) {
    throw Error(label(source) + ": invalid PNG dimensions " + std::to_string(width) + "x" +
                std::to_string(height) + " (each must be in 1.." +
                std::to_string(kPngMaxDimension) + ")");
  }
  return {ImageFormat::kPng, static_cast<int>(width), static_cast<int>(height)};
}

bool is_jpeg_sof(uint8_t marker) {
  return marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC;
}

ImageHeader probe_jpeg(const uint8_t* data, std::size_t size, const std::string& source) {
  const auto truncated = [&](std::size_t need) {
    return Error(label(source) + ": truncated JPEG header: need at least " + std::to_string(need) +
                 " bytes to reach the SOF frame header, got " + std::to_string(size));
  };
  std::size_t pos = 2;  // after SOI
  while (true) {
    if (pos >= size) throw truncated(pos + 1);
    if (data[pos] != 0xFF) {
      throw Error(label(source) + ": malformed JPEG header: expected a marker (0xff) at byte " +
                  std::to_string(pos) + ", found 0x" + hex_bytes(data + pos, 1, 1));
    }
    while (pos < size && data[pos] == 0xFF) ++pos;  // fill bytes
    if (pos >= size) throw truncated(pos + 1);
    const uint8_t marker = data[pos++];
    if (marker == 0x01 || (marker >= 0xD0 && marker <= 0xD8)) continue;  // no length field
    if (marker == 0xD9 || marker == 0xDA) {
      throw Error(label(source) + ": malformed JPEG: " + (marker == 0xDA ? "SOS" : "EOI") +
                  " marker before any SOF frame header");
    }
    if (pos + 2 > size) throw truncated(pos + 2);
    const uint16_t length = read_be16(data + pos);
    if (length < 2) {
      throw Error(label(source) + ": malformed JPEG header: marker 0x" + hex_bytes(&marker, 1, 1) +
                  " has segment length " + std::to_string(length) + " (minimum 2)");
    }
    if (is_jpeg_sof(marker)) {
      // length(2) precision(1) height(2) width(2)
      if (pos + 7 > size) throw truncated(pos + 7);
      const int height = read_be16(data + pos + 3);
      const int width = read_be16(data + pos + 5);
      if (width == 0 || height == 0) {
        throw Error(label(source) + ": invalid JPEG dimensions " + std::to_string(width) + "x" +
                    std::to_string(height) + " (zero width or height, DNL is not supported)");
      }
      return {ImageFormat::kJpeg, width, height};
    }
    pos += length;
  }
}

}  // namespace

ImageHeader probe_image(const uint8_t* data, std::size_t size, const std::string& source) {
  if (size >= sizeof(kPngSignature) && std::memcmp(data, kPngSignature, 8) == 0) {
    return probe_png(data, size, source);
  }
  if (size >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF) {
    return probe_jpeg(data, size, source);
  }
  if (size == 0) throw Error(label(source) + ": unknown image format: the data is empty");
  throw Error(label(source) +
              ": unknown image format: expected a PNG (89 50 4e 47) or JPEG (ff d8 ff) "
              "signature, found " +
              hex_bytes(data, size, 8));
}

RgbImage decode_image(const uint8_t* data, std::size_t size, const ImageLimits& limits,
                      const std::string& source, Alpha alpha) {
  if (size > limits.max_bytes) {
    throw Error(label(source) + ": " + std::to_string(size) + " bytes exceeds the limit of " +
                std::to_string(limits.max_bytes) + " (max_bytes)");
  }
  const ImageHeader header = probe_image(data, size, source);
  const std::int64_t pixels = std::int64_t{header.width} * header.height;
  if (pixels > limits.max_pixels) {
    throw Error(label(source) + ": " + std::to_string(header.width) + "x" +
                std::to_string(header.height) + " = " + std::to_string(pixels) +
                " pixels exceeds the limit of " + std::to_string(limits.max_pixels) +
                " (max_pixels)");
  }
  if (header.format == ImageFormat::kPng) return decode_png(data, size, source, alpha);
  return decode_jpeg(data, size, header, source);
}

RgbImage read_image_file(const std::string& path, const ImageLimits& limits, Alpha alpha) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    throw Error("image file '" + path + "': cannot read: " +
                (ec ? ec.message() : std::string("not a regular file or does not exist")));
  }
  const std::uintmax_t file_size = std::filesystem::file_size(path, ec);
  if (ec) throw Error("image file '" + path + "': cannot read: " + ec.message());
  if (file_size > limits.max_bytes) {
    throw Error(label(path) + ": " + std::to_string(file_size) + " bytes exceeds the limit of " +
                std::to_string(limits.max_bytes) + " (max_bytes)");
  }
  std::ifstream in(path, std::ios::binary);
  std::vector<uint8_t> bytes(static_cast<std::size_t>(file_size));
  if (!in ||
      !in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()))) {
    throw Error("image file '" + path + "': cannot read " + std::to_string(file_size) +
                " bytes: " + std::strerror(errno));
  }
  return decode_image(bytes.data(), bytes.size(), limits, path, alpha);
}

}  // namespace flamingo
