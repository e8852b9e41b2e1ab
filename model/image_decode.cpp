#include "model/image_decode.h"

#include <png.h>
#include <turbojpeg.h>

#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <system_error>

#include "model/error.h"

namespace flamingo {
namespace {

constexpr uint8_t kPngSignature[8] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
// Signature + IHDR length + "IHDR" + 13 data bytes (the CRC is checked by libpng).
constexpr std::size_t kPngHeaderBytes = 8 + 8 + 13;
constexpr uint32_t kPngMaxDimension = 0x7fffffffu;

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

// Pillow's Image.alpha_composite(opaque white, (c, a)) for one colour channel
// (AlphaComposite.c with dst = 255, dst alpha = 255, PRECISION_BITS 7). Exact for all c, a.
inline uint8_t composite_over_white(uint32_t c, uint32_t a) {
  const uint32_t t = 128 * (c * a + 255 * (255 - a)) + 16384;
  return static_cast<uint8_t>((((t >> 8) + t) >> 8) >> 7);
}

inline void put_composited(uint8_t* out, uint32_t r, uint32_t g, uint32_t b, uint32_t a) {
  out[0] = composite_over_white(r, a);
  out[1] = composite_over_white(g, a);
  out[2] = composite_over_white(b, a);
}

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

// ---------------------------------------------------------------------------------------------
// PNG (libpng). libpng reports errors by longjmp; the functions that call into libpng under a
// setjmp own no C++ objects, so nothing with a destructor is ever jumped over.

struct PngSource {
  const uint8_t* data;
  std::size_t size;
  std::size_t pos;
  char message[256];  // first error message
};

void png_read_from_memory(png_structp png, png_bytep out, std::size_t count) {
  auto* src = static_cast<PngSource*>(png_get_io_ptr(png));
  if (count > src->size - src->pos) {
    std::snprintf(src->message, sizeof(src->message),
                  "data is truncated: needed %zu bytes at offset %zu, only %zu left", count,
                  src->pos, src->size - src->pos);
    png_error(png, src->message);
  }
  std::memcpy(out, src->data + src->pos, count);
  src->pos += count;
}

void png_on_error(png_structp png, png_const_charp message) {
  auto* src = static_cast<PngSource*>(png_get_error_ptr(png));
  if (src->message[0] == '\0') std::snprintf(src->message, sizeof(src->message), "%s", message);
  png_longjmp(png, 1);
}

void png_on_warning(png_structp, png_const_charp) {}

// Everything the row conversion needs, read from the PNG header.
struct PngLayout {
  uint32_t width;
  uint32_t height;
  int bit_depth;
  int color_type;
  int passes;
  std::size_t rowbytes;
  bool has_trns_gray;        // grayscale tRNS present
  uint16_t trns_gray;        // its raw sample value (as Pillow's i16 reads it)
  uint8_t palette[256 * 4];  // RGBA, for palette images
};

bool png_read_header(png_structp png, png_infop info, PngLayout* layout) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_read_info(png, info);
  png_uint_32 width = 0;
  png_uint_32 height = 0;
  int bit_depth = 0;
  int color_type = 0;
  int interlace = 0;
  png_get_IHDR(png, info, &width, &height, &bit_depth, &color_type, &interlace, nullptr, nullptr);
  layout->width = width;
  layout->height = height;
  layout->bit_depth = bit_depth;
  layout->color_type = color_type;
  if (bit_depth < 8) png_set_packing(png);  // one byte per sample, values unscaled
  layout->passes = png_set_interlace_handling(png);
  png_read_update_info(png, info);
  layout->rowbytes = png_get_rowbytes(png, info);

  layout->has_trns_gray = false;
  png_bytep trans_alpha = nullptr;
  int num_trans = 0;
  png_color_16p trans_color = nullptr;
  const bool has_trns =
      png_get_tRNS(png, info, &trans_alpha, &num_trans, &trans_color) & PNG_INFO_tRNS;
  if (color_type == PNG_COLOR_TYPE_PALETTE) {
    // Pillow's palette: entries not given by PLTE stay (i, i, i); alpha from tRNS, else 255.
    for (int i = 0; i < 256; ++i) {
      layout->palette[i * 4 + 0] = layout->palette[i * 4 + 1] = layout->palette[i * 4 + 2] =
          static_cast<uint8_t>(i);
      layout->palette[i * 4 + 3] = 255;
    }
    png_colorp plte = nullptr;
    int num_plte = 0;
    if (png_get_PLTE(png, info, &plte, &num_plte) & PNG_INFO_PLTE) {
      for (int i = 0; i < num_plte && i < 256; ++i) {
        layout->palette[i * 4 + 0] = plte[i].red;
        layout->palette[i * 4 + 1] = plte[i].green;
        layout->palette[i * 4 + 2] = plte[i].blue;
      }
    }
    if (has_trns && trans_alpha != nullptr) {
      for (int i = 0; i < num_trans && i < 256; ++i) layout->palette[i * 4 + 3] = trans_alpha[i];
    }
  } else if (has_trns && trans_color != nullptr && color_type == PNG_COLOR_TYPE_GRAY) {
    layout->has_trns_gray = true;
    layout->trns_gray = trans_color->gray;
  }
  return true;
}

// One decoded row (after png_set_packing, 16-bit samples big-endian) to RGB, the way Pillow
// unpacks the PNG mode and then convert("RGBA") + alpha_composite over white treats it:
//   gray 1/2/4 bit -> "1"/"L;2"/"L;4" scaled to 0..255; gray 16 -> mode "I", clipped to 255;
//   RGB/RGBA/LA 16 bit -> the high byte of each sample;
//   gray tRNS -> a pixel whose 8-bit value equals the tRNS sample's LOW byte gets alpha 0
//   (Convert.c rgbT2a masks with 0xff), i.e. becomes white; RGB tRNS is ignored (an "RGB" image
//   skips convert_to_rgb); palette -> RGBA lookup in a 256-entry palette whose entries past
//   PLTE stay (i, i, i), alpha from tRNS (else 255).
void convert_png_row(const PngLayout& layout, const uint8_t* raw, uint8_t* out) {
  const uint32_t width = layout.width;
  const int depth = layout.bit_depth;
  const uint8_t trns = static_cast<uint8_t>(layout.trns_gray & 0xff);
  switch (layout.color_type) {
    case PNG_COLOR_TYPE_GRAY:
      for (uint32_t x = 0; x < width; ++x, out += 3) {
        uint8_t v;
        if (depth == 16) {
          const uint32_t s = read_be16(raw + 2 * x);
          v = static_cast<uint8_t>(s >= 255 ? 255 : s);
        } else if (depth == 8) {
          v = raw[x];
        } else if (depth == 4) {
          v = static_cast<uint8_t>(raw[x] * 0x11);
        } else if (depth == 2) {
          v = static_cast<uint8_t>(raw[x] * 0x55);
        } else {
          v = raw[x] != 0 ? 255 : 0;
        }
        if (layout.has_trns_gray && v == trns) v = 255;  // alpha 0 over white
        out[0] = out[1] = out[2] = v;
      }
      break;
    case PNG_COLOR_TYPE_RGB: {
      // Mode "RGB": convert_to_rgb returns it unchanged, so a tRNS colour is ignored.
      const int step = depth == 16 ? 6 : 3;
      const int lane = depth == 16 ? 2 : 1;
      for (uint32_t x = 0; x < width; ++x, out += 3) {
        const uint8_t* p = raw + static_cast<std::size_t>(x) * step;
        out[0] = p[0];
        out[1] = p[lane];
        out[2] = p[2 * lane];
      }
      break;
    }
    case PNG_COLOR_TYPE_PALETTE:
      for (uint32_t x = 0; x < width; ++x, out += 3) {
        const uint8_t* e = layout.palette + raw[x] * 4;
        put_composited(out, e[0], e[1], e[2], e[3]);
      }
      break;
    case PNG_COLOR_TYPE_GRAY_ALPHA: {
      const int step = depth == 16 ? 4 : 2;
      for (uint32_t x = 0; x < width; ++x, out += 3) {
        const uint8_t* p = raw + static_cast<std::size_t>(x) * step;
        const uint8_t v = composite_over_white(p[0], p[step / 2]);
        out[0] = out[1] = out[2] = v;
      }
      break;
    }
    case PNG_COLOR_TYPE_RGB_ALPHA: {
      const int step = depth == 16 ? 8 : 4;
      const int lane = depth == 16 ? 2 : 1;
      for (uint32_t x = 0; x < width; ++x, out += 3) {
        const uint8_t* p = raw + static_cast<std::size_t>(x) * step;
        put_composited(out, p[0], p[lane], p[2 * lane], p[3 * lane]);
      }
      break;
    }
    default:
      break;  // rejected by libpng's IHDR check
  }
}

// Non-interlaced: rows are read one at a time into `row` and converted straight into `rgb`.
// Interlaced: `rows` points into a whole-image buffer that png_read_image fills.
bool png_read_pixels(png_structp png, const PngLayout* layout, uint8_t* row, png_bytepp rows,
                     uint8_t* rgb) {
  if (setjmp(png_jmpbuf(png))) return false;
  const std::size_t out_stride = static_cast<std::size_t>(layout->width) * 3;
  if (rows != nullptr) {
    png_read_image(png, rows);
    for (uint32_t y = 0; y < layout->height; ++y) {
      convert_png_row(*layout, rows[y], rgb + y * out_stride);
    }
  } else {
    for (uint32_t y = 0; y < layout->height; ++y) {
      png_read_row(png, row, nullptr);
      convert_png_row(*layout, row, rgb + y * out_stride);
    }
  }
  return true;
}

class PngReadStruct {
 public:
  PngReadStruct(PngSource* source, const std::string& source_label) {
    png_ = png_create_read_struct(PNG_LIBPNG_VER_STRING, source, png_on_error, png_on_warning);
    if (png_ != nullptr) info_ = png_create_info_struct(png_);
    if (png_ == nullptr || info_ == nullptr) {
      png_destroy_read_struct(&png_, &info_, nullptr);
      throw Error(label(source_label) + ": cannot create the libpng read structure");
    }
  }
  ~PngReadStruct() { png_destroy_read_struct(&png_, &info_, nullptr); }
  PngReadStruct(const PngReadStruct&) = delete;
  PngReadStruct& operator=(const PngReadStruct&) = delete;
  png_structp png() const { return png_; }
  png_infop info() const { return info_; }

 private:
  png_structp png_ = nullptr;
  png_infop info_ = nullptr;
};

RgbImage decode_png(const uint8_t* data, std::size_t size, const std::string& source) {
  PngSource src{data, size, 0, {0}};
  PngReadStruct reader(&src, source);
  png_set_read_fn(reader.png(), &src, png_read_from_memory);
  // Our own max_pixels check has already run; let libpng accept any valid PNG dimension.
  png_set_user_limits(reader.png(), kPngMaxDimension, kPngMaxDimension);

  PngLayout layout{};
  if (!png_read_header(reader.png(), reader.info(), &layout)) {
    throw Error(label(source) + ": invalid PNG: " + src.message);
  }
  RgbImage image;
  image.width = static_cast<int>(layout.width);
  image.height = static_cast<int>(layout.height);
  image.data.resize(static_cast<std::size_t>(layout.width) * layout.height * 3);

  std::vector<uint8_t> raw;
  std::vector<png_bytep> rows;
  if (layout.passes > 1) {
    raw.resize(layout.rowbytes * layout.height);
    rows.resize(layout.height);
    for (uint32_t y = 0; y < layout.height; ++y) rows[y] = raw.data() + y * layout.rowbytes;
  } else {
    raw.resize(layout.rowbytes);
  }
  if (!png_read_pixels(reader.png(), &layout, raw.data(), rows.empty() ? nullptr : rows.data(),
                       image.data.data())) {
    throw Error(label(source) + ": invalid PNG: " + src.message);
  }
  return image;
}

// ---------------------------------------------------------------------------------------------
// JPEG (TurboJPEG). Flags match Pillow's libjpeg defaults: ISLOW integer IDCT, fancy upsampling.

class TjDecompressor {
 public:
  explicit TjDecompressor(const std::string& source) : handle_(tjInitDecompress()) {
    if (handle_ == nullptr) {
      throw Error(label(source) +
                  ": cannot create a TurboJPEG decompressor: " + tjGetErrorStr2(nullptr));
    }
  }
  ~TjDecompressor() { tjDestroy(handle_); }
  TjDecompressor(const TjDecompressor&) = delete;
  TjDecompressor& operator=(const TjDecompressor&) = delete;
  tjhandle get() const { return handle_; }

 private:
  tjhandle handle_;
};

RgbImage decode_jpeg(const uint8_t* data, std::size_t size, const ImageHeader& header,
                     const std::string& source) {
  TjDecompressor tj(source);
  const auto jpeg_size = static_cast<unsigned long>(size);
  int width = 0;
  int height = 0;
  int subsamp = 0;
  int colorspace = 0;
  if (tjDecompressHeader3(tj.get(), data, jpeg_size, &width, &height, &subsamp, &colorspace) != 0) {
    throw Error(label(source) + ": invalid JPEG: " + tjGetErrorStr2(tj.get()));
  }
  if (width != header.width || height != header.height) {
    throw Error(label(source) + ": invalid JPEG: decoder reports " + std::to_string(width) + "x" +
                std::to_string(height) + ", the frame header declares " +
                std::to_string(header.width) + "x" + std::to_string(header.height));
  }
  int pixel_format = TJPF_RGB;
  if (colorspace == TJCS_GRAY) {
    pixel_format = TJPF_GRAY;
  } else if (colorspace == TJCS_CMYK || colorspace == TJCS_YCCK) {
    pixel_format = TJPF_CMYK;
  }
  const int channels = tjPixelSize[pixel_format];
  const std::size_t pixels = static_cast<std::size_t>(width) * height;
  std::vector<uint8_t> decoded(pixels * channels);
  if (tjDecompress2(tj.get(), data, jpeg_size, decoded.data(), width, 0, height, pixel_format,
                    TJFLAG_ACCURATEDCT) != 0) {
    const std::string message = tjGetErrorStr2(tj.get());
    // Warnings (e.g. extraneous bytes before a marker) leave a usable image, as in Pillow, which
    // ignores libjpeg warnings; running out of data is an error there ("image file is
    // truncated"), and so it is here.
    const bool truncated = message.find("Premature end of JPEG file") != std::string::npos ||
                           message.find("premature end of data segment") != std::string::npos;
    if (tjGetErrorCode(tj.get()) == TJERR_FATAL || truncated) {
      throw Error(label(source) + ": invalid JPEG: " + message);
    }
  }

  RgbImage image;
  image.width = width;
  image.height = height;
  if (pixel_format == TJPF_RGB) {
    image.data = std::move(decoded);
    return image;
  }
  image.data.resize(pixels * 3);
  uint8_t* out = image.data.data();
  if (pixel_format == TJPF_GRAY) {
    for (std::size_t i = 0; i < pixels; ++i, out += 3) out[0] = out[1] = out[2] = decoded[i];
    return image;
  }
  // CMYK: Pillow reads it as "CMYK;I" (Adobe's inverted convention, every channel v -> 255 - v),
  // then Convert.c cmyk2rgb: out = clip8(nk - MULDIV255(c, nk)) with nk = 255 - k.
  for (std::size_t i = 0; i < pixels; ++i, out += 3) {
    const uint8_t* p = decoded.data() + i * 4;
    const int nk = p[3];  // 255 - (255 - stored k)
    for (int c = 0; c < 3; ++c) {
      const int value = 255 - p[c];
      const int tmp = value * nk + 128;
      const int muldiv = ((tmp >> 8) + tmp) >> 8;
      const int v = nk - muldiv;
      out[c] = static_cast<uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v));
    }
  }
  return image;
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
                      const std::string& source) {
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
  if (header.format == ImageFormat::kPng) return decode_png(data, size, source);
  return decode_jpeg(data, size, header, source);
}

RgbImage read_image_file(const std::string& path, const ImageLimits& limits) {
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
  return decode_image(bytes.data(), bytes.size(), limits, path);
}

}  // namespace flamingo
