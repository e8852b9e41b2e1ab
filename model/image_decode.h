// Image decoding for the input pipeline: PNG (libpng) and JPEG (libjpeg-turbo's TurboJPEG API)
// into 8-bit RGB, reproducing what Pillow 9.4 followed by transformers' convert_to_rgb gives
// (Image.open -> convert("RGBA") -> alpha_composite over opaque white -> drop alpha).
// Owns: format sniffing, header probing, size/pixel limits, the PNG colour-type and bit-depth
// rules (Pillow's, including its 16-bit and tRNS quirks) and JPEG colour-space handling.
// Thread-safety: every function is reentrant and keeps no state; call from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace flamingo {

// HWC row-major RGB8: data.size() == width * height * 3.
struct RgbImage {
  int width = 0;
  int height = 0;
  std::vector<uint8_t> data;
};

struct ImageLimits {
  std::size_t max_bytes = 20u << 20;     // encoded size
  std::int64_t max_pixels = 40'000'000;  // declared width * height
};

enum class ImageFormat { kPng, kJpeg };

// How transparency becomes RGB. kOverWhite: transformers' convert_to_rgb (IDEFICS): convert
// ("RGBA") and alpha_composite over opaque white. kDrop: Pillow's convert("RGB") (CLIP's
// do_convert_rgb): alpha and tRNS are ignored, the colour kept.
enum class Alpha { kOverWhite, kDrop };

struct ImageHeader {
  ImageFormat format;
  int width;
  int height;
};

// Reads only the signature and the header (PNG IHDR, JPEG markers up to the SOF frame header).
// Throws Error for an unknown format, a truncated or malformed header or a zero dimension.
// `source` labels the image in error messages (a file path, or e.g. "image 2").
ImageHeader probe_image(const uint8_t* data, std::size_t size, const std::string& source);

// Checks `size` against limits.max_bytes and the declared width*height against
// limits.max_pixels before decoding anything, then decodes. Corrupt or truncated data throws
// Error. Grayscale, grayscale+alpha, palette (with tRNS), 16-bit and RGBA PNGs and grayscale or
// CMYK JPEGs are converted to RGB exactly as Pillow + convert_to_rgb do.
RgbImage decode_image(const uint8_t* data, std::size_t size, const ImageLimits& limits,
                      const std::string& source, Alpha alpha = Alpha::kOverWhite);

// Reads the file (refusing one larger than limits.max_bytes before reading it) and decodes it.
// Errors name the path.
RgbImage read_image_file(const std::string& path, const ImageLimits& limits,
                         Alpha alpha = Alpha::kOverWhite);

}  // namespace flamingo
