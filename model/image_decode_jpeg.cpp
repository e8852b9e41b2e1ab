// JPEG decoding with TurboJPEG, as Pillow 9.4 + convert_to_rgb would give it. See
// image_decode.h.
#include <turbojpeg.h>

#include <cstring>

#include "model/error.h"
#include "model/image_decode_internal.h"

namespace flamingo::image_detail {
namespace {

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

}  // namespace

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

}  // namespace flamingo::image_detail
