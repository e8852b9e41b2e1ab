// Helpers shared by the image decoder's files (model/image_decode.cpp: probing and the public
// entry points; image_decode_png.cpp; image_decode_jpeg.cpp). Not an API: include only there.
// Pure functions: thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "model/image_decode.h"

namespace flamingo::image_detail {

// PNG's largest width or height (2^31 - 1).
constexpr uint32_t kPngMaxDimension = 0x7fffffffu;

std::string label(const std::string& source);  // "image 'SOURCE'" for error messages
uint32_t read_be32(const uint8_t* p);
uint16_t read_be16(const uint8_t* p);
// The first max_count bytes as "89 50 4e 47".
std::string hex_bytes(const uint8_t* data, std::size_t size, std::size_t max_count);

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

// Decoders; the caps (bytes, pixels) have been checked by decode_image. Throw Error naming
// `source` for corrupt or truncated data.
RgbImage decode_png(const uint8_t* data, std::size_t size, const std::string& source, Alpha alpha);
RgbImage decode_jpeg(const uint8_t* data, std::size_t size, const ImageHeader& header,
                     const std::string& source);

}  // namespace flamingo::image_detail
