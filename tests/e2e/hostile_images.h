// Hostile and odd images for the hostile-input suite (server_e2e_hostile_test.cpp), made in
// the test: a minimal PNG writer (zlib for IDAT and the chunk CRCs, any colour type, bit
// depth and Adam7 interlacing, extra chunks), JPEGs through TurboJPEG (4:4:4, 4:2:0,
// grayscale, CMYK, progressive), and edits of their bytes (truncation, flips, patched
// headers).
#pragma once

#include <turbojpeg.h>
#include <zlib.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace flamingo::e2e {

inline void put_u32(std::string& out, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<char>((v >> s) & 0xff));
}

// One chunk: length, type, data, CRC of type + data (or `crc` when given).
inline std::string png_chunk(const std::string& type, const std::string& data,
                             const uint32_t* crc = nullptr) {
  std::string out;
  put_u32(out, static_cast<uint32_t>(data.size()));
  const std::string body = type + data;
  out += body;
  put_u32(out, crc != nullptr
                   ? *crc
                   : static_cast<uint32_t>(crc32(0, reinterpret_cast<const Bytef*>(body.data()),
                                                 static_cast<uInt>(body.size()))));
  return out;
}

inline std::string zlib_compress(const std::string& raw, int level = 6) {
  uLongf size = compressBound(static_cast<uLong>(raw.size()));
  std::string out(size, '\0');
  if (compress2(reinterpret_cast<Bytef*>(out.data()), &size,
                reinterpret_cast<const Bytef*>(raw.data()), static_cast<uLong>(raw.size()),
                level) != Z_OK) {
    throw std::runtime_error("zlib compress2 failed");
  }
  out.resize(size);
  return out;
}

struct PngSpec {
  uint32_t width = 8, height = 8;
  int bit_depth = 8;
  int color_type = 2;  // 0 gray, 2 RGB, 3 palette, 4 gray + alpha, 6 RGBA
  int interlace = 0;   // 0 none, 1 Adam7
  int compression = 0, filter = 0;
  std::string before_idat;  // extra chunks (PLTE for palette images is added automatically)
};

inline int png_channels(int color_type) {
  return color_type == 0 || color_type == 3 ? 1 : color_type == 4 ? 2 : color_type == 2 ? 3 : 4;
}

// The filtered scanlines (filter type 0) of a w x h image, samples from a fixed pattern.
inline std::string png_scanlines(uint32_t w, uint32_t h, int bit_depth, int channels,
                                 uint32_t seed) {
  const uint64_t bits = static_cast<uint64_t>(w) * channels * bit_depth;
  const uint64_t row_bytes = (bits + 7) / 8;
  std::string raw;
  raw.reserve(static_cast<size_t>((row_bytes + 1) * h));
  for (uint32_t y = 0; y < h; ++y) {
    raw.push_back('\0');
    for (uint64_t i = 0; i < row_bytes; ++i) {
      raw.push_back(static_cast<char>((y * 31 + i * 7 + seed) & 0xff));
    }
  }
  return raw;
}

inline std::string png_image_data(const PngSpec& s) {
  const int channels = png_channels(s.color_type);
  if (s.interlace != 1) return png_scanlines(s.width, s.height, s.bit_depth, channels, 0);
  // Adam7: seven reduced images, each with its own scanlines (empty passes are omitted).
  static const int x0[] = {0, 4, 0, 2, 0, 1, 0}, dx[] = {8, 8, 4, 4, 2, 2, 1};
  static const int y0[] = {0, 0, 4, 0, 2, 0, 1}, dy[] = {8, 8, 8, 4, 4, 2, 2};
  std::string raw;
  for (int p = 0; p < 7; ++p) {
    const uint32_t pw =
        s.width > static_cast<uint32_t>(x0[p]) ? (s.width - x0[p] + dx[p] - 1) / dx[p] : 0;
    const uint32_t ph =
        s.height > static_cast<uint32_t>(y0[p]) ? (s.height - y0[p] + dy[p] - 1) / dy[p] : 0;
    if (pw > 0 && ph > 0) raw += png_scanlines(pw, ph, s.bit_depth, channels, p);
  }
  return raw;
}

inline std::string png_ihdr(const PngSpec& s) {
  std::string ihdr;
  put_u32(ihdr, s.width);
  put_u32(ihdr, s.height);
  ihdr.push_back(static_cast<char>(s.bit_depth));
  ihdr.push_back(static_cast<char>(s.color_type));
  ihdr.push_back(static_cast<char>(s.compression));
  ihdr.push_back(static_cast<char>(s.filter));
  ihdr.push_back(static_cast<char>(s.interlace));
  return png_chunk("IHDR", ihdr);
}

inline const std::string kPngSignature = "\x89PNG\r\n\x1a\n";

// A whole PNG; `idat` replaces the compressed image data when given.
inline std::string make_png(const PngSpec& s, const std::string* idat = nullptr) {
  std::string png = kPngSignature + png_ihdr(s);
  if (s.color_type == 3) {
    std::string plte;
    for (int i = 0; i < (1 << std::min(s.bit_depth, 8)); ++i) {
      plte += {static_cast<char>(i), static_cast<char>(255 - i), static_cast<char>(i * 3)};
    }
    png += png_chunk("PLTE", plte);
  }
  png += s.before_idat;
  png += png_chunk("IDAT", idat != nullptr ? *idat : zlib_compress(png_image_data(s)));
  png += png_chunk("IEND", "");
  return png;
}

enum class JpegKind { k444, k420, kGray, kCmyk, kProgressive };

inline std::string make_jpeg(int width, int height, JpegKind kind) {
  const int pf = kind == JpegKind::kGray   ? TJPF_GRAY
                 : kind == JpegKind::kCmyk ? TJPF_CMYK
                                           : TJPF_RGB;
  std::vector<unsigned char> pixels(static_cast<size_t>(width) * height * tjPixelSize[pf]);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<unsigned char>(i * 13 % 251);
  const int subsamp = kind == JpegKind::kGray  ? TJSAMP_GRAY
                      : kind == JpegKind::k420 ? TJSAMP_420
                                               : TJSAMP_444;
  tjhandle tj = tjInitCompress();
  unsigned char* out = nullptr;
  unsigned long size = 0;
  const int flags = kind == JpegKind::kProgressive ? TJFLAG_PROGRESSIVE : 0;
  const int rc =
      tjCompress2(tj, pixels.data(), width, 0, height, pf, &out, &size, subsamp, 90, flags);
  std::string jpeg = rc == 0 ? std::string(reinterpret_cast<char*>(out), size) : std::string();
  tjFree(out);
  tjDestroy(tj);
  if (rc != 0) throw std::runtime_error("tjCompress2 failed");
  return jpeg;
}

// Overwrites the JPEG's frame size (the first SOF marker's height and width).
inline std::string patch_jpeg_size(std::string jpeg, int width, int height) {
  for (size_t i = 2; i + 9 < jpeg.size(); ++i) {
    const auto m = static_cast<unsigned char>(jpeg[i + 1]);
    if (static_cast<unsigned char>(jpeg[i]) == 0xff && m >= 0xc0 && m <= 0xc2) {
      jpeg[i + 5] = static_cast<char>(height >> 8);
      jpeg[i + 6] = static_cast<char>(height & 0xff);
      jpeg[i + 7] = static_cast<char>(width >> 8);
      jpeg[i + 8] = static_cast<char>(width & 0xff);
      return jpeg;
    }
  }
  throw std::runtime_error("no SOF marker");
}

}  // namespace flamingo::e2e
