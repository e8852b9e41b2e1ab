// Bicubic image resizing that reproduces Pillow 9.4's Image.resize(size, BICUBIC) bit for bit on
// 8-bit RGB (libImaging/Resample.c: antialiased separable convolution, a = -0.5 cubic kernel
// widened by the scale when downsampling, 22-bit fixed-point coefficients, horizontal pass
// first, uint8 rounding between the passes).
// Thread-safety: pure function, no shared state.
#pragma once

#include "model/image_decode.h"

namespace flamingo {

// Resizes `in` to out_width x out_height (no aspect-ratio preservation). Returns a copy when the
// size is unchanged. Throws Error for an empty or inconsistent input or a non-positive size.
RgbImage resize_bicubic(const RgbImage& in, int out_width, int out_height);

}  // namespace flamingo
