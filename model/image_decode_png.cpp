// PNG decoding with libpng, as Pillow 9.4 + convert_to_rgb would give it. See image_decode.h.
#include <png.h>

#include <csetjmp>
#include <cstdio>
#include <cstring>

#include "model/error.h"
#include "model/image_decode_internal.h"

namespace flamingo::image_detail {
namespace {

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
  bool drop_alpha;           // Alpha::kDrop: colours as stored, transparency ignored
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
        if (layout.has_trns_gray && !layout.drop_alpha && v == trns) v = 255;  // alpha 0 over white
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
        put_composited(out, e[0], e[1], e[2], layout.drop_alpha ? 255 : e[3]);
      }
      break;
    case PNG_COLOR_TYPE_GRAY_ALPHA: {
      const int step = depth == 16 ? 4 : 2;
      for (uint32_t x = 0; x < width; ++x, out += 3) {
        const uint8_t* p = raw + static_cast<std::size_t>(x) * step;
        const uint8_t v = layout.drop_alpha ? p[0] : composite_over_white(p[0], p[step / 2]);
        out[0] = out[1] = out[2] = v;
      }
      break;
    }
    case PNG_COLOR_TYPE_RGB_ALPHA: {
      const int step = depth == 16 ? 8 : 4;
      const int lane = depth == 16 ? 2 : 1;
      for (uint32_t x = 0; x < width; ++x, out += 3) {
        const uint8_t* p = raw + static_cast<std::size_t>(x) * step;
        put_composited(out, p[0], p[lane], p[2 * lane], layout.drop_alpha ? 255 : p[3 * lane]);
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

}  // namespace

RgbImage decode_png(const uint8_t* data, std::size_t size, const std::string& source, Alpha alpha) {
  PngSource src{data, size, 0, {0}};
  PngReadStruct reader(&src, source);
  png_set_read_fn(reader.png(), &src, png_read_from_memory);
  // Our own max_pixels check has already run; let libpng accept any valid PNG dimension.
  png_set_user_limits(reader.png(), kPngMaxDimension, kPngMaxDimension);

  PngLayout layout{};
  layout.drop_alpha = alpha == Alpha::kDrop;
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

}  // namespace flamingo::image_detail
