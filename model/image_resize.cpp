#include "model/image_resize.h"

#include <climits>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "model/error.h"

namespace flamingo {
namespace {

constexpr int kPrecisionBits = 32 - 8 - 2;  // Resample.c PRECISION_BITS
constexpr double kBicubicSupport = 2.0;

// Resample.c bicubic_filter, a = -0.5.
double bicubic_filter(double x) {
  constexpr double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

// Per output sample: the first input index and the number of taps (bounds), plus `ksize`
// fixed-point weights (precompute_coeffs + normalize_coeffs_8bpc).
struct Coefficients {
  int ksize = 0;
  std::vector<int> bounds;  // [out * 2]: xmin, count
  std::vector<int32_t> weights;
};

Coefficients precompute_coefficients(int in_size, int out_size) {
  const double in0 = 0.0;
  const double in1 = in_size;
  const double scale = (in1 - in0) / out_size;
  double filterscale = scale;
  if (filterscale < 1.0) filterscale = 1.0;
  const double support = kBicubicSupport * filterscale;
  const int ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  if (out_size > INT_MAX / (ksize * static_cast<int>(sizeof(double)))) {
    throw Error("resize_bicubic: " + std::to_string(in_size) + " -> " + std::to_string(out_size) +
                " needs too many filter coefficients (ksize " + std::to_string(ksize) + ")");
  }
  Coefficients c;
  c.ksize = ksize;
  c.bounds.resize(static_cast<std::size_t>(out_size) * 2);
  c.weights.assign(static_cast<std::size_t>(out_size) * ksize, 0);
  std::vector<double> k(ksize);
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = in0 + (xx + 0.5) * scale;
    double ww = 0.0;
    const double ss = 1.0 / filterscale;
    int xmin = static_cast<int>(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = static_cast<int>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    int x = 0;
    for (; x < xmax; ++x) {
      const double w = bicubic_filter((x + xmin - center + 0.5) * ss);
      k[x] = w;
      ww += w;
    }
    for (x = 0; x < xmax; ++x) {
      if (ww != 0.0) k[x] /= ww;
    }
    for (; x < ksize; ++x) k[x] = 0;
    int32_t* kk = &c.weights[static_cast<std::size_t>(xx) * ksize];
    for (x = 0; x < ksize; ++x) {
      kk[x] = k[x] < 0 ? static_cast<int32_t>(-0.5 + k[x] * (1 << kPrecisionBits))
                       : static_cast<int32_t>(0.5 + k[x] * (1 << kPrecisionBits));
    }
    c.bounds[xx * 2 + 0] = xmin;
    c.bounds[xx * 2 + 1] = xmax;
  }
  return c;
}

// Resample.c clip8: arithmetic shift out of fixed point, clamped to 0..255.
inline uint8_t clip8(int32_t v) {
  const int32_t s = v >> kPrecisionBits;
  return static_cast<uint8_t>(s < 0 ? 0 : (s > 255 ? 255 : s));
}

// Rows [row_first, row_first + out.height) of `in`, resampled along x into `out`.
void resample_horizontal(const RgbImage& in, int row_first, const Coefficients& c, RgbImage& out) {
  const std::size_t in_stride = static_cast<std::size_t>(in.width) * 3;
  for (int yy = 0; yy < out.height; ++yy) {
    const uint8_t* src = in.data.data() + (yy + row_first) * in_stride;
    uint8_t* dst = out.data.data() + static_cast<std::size_t>(yy) * out.width * 3;
    for (int xx = 0; xx < out.width; ++xx) {
      const int xmin = c.bounds[xx * 2 + 0];
      const int count = c.bounds[xx * 2 + 1];
      const int32_t* k = &c.weights[static_cast<std::size_t>(xx) * c.ksize];
      int32_t ss0 = 1 << (kPrecisionBits - 1);
      int32_t ss1 = ss0;
      int32_t ss2 = ss0;
      const uint8_t* p = src + static_cast<std::size_t>(xmin) * 3;
      for (int x = 0; x < count; ++x, p += 3) {
        ss0 += p[0] * k[x];
        ss1 += p[1] * k[x];
        ss2 += p[2] * k[x];
      }
      dst[xx * 3 + 0] = clip8(ss0);
      dst[xx * 3 + 1] = clip8(ss1);
      dst[xx * 3 + 2] = clip8(ss2);
    }
  }
}

// Resampled along y; bounds are relative to `in`'s first row.
void resample_vertical(const RgbImage& in, const std::vector<int>& bounds, const Coefficients& c,
                       RgbImage& out) {
  const std::size_t stride = static_cast<std::size_t>(in.width) * 3;
  for (int yy = 0; yy < out.height; ++yy) {
    const int ymin = bounds[yy * 2 + 0];
    const int count = bounds[yy * 2 + 1];
    const int32_t* k = &c.weights[static_cast<std::size_t>(yy) * c.ksize];
    uint8_t* dst = out.data.data() + yy * stride;
    for (std::size_t i = 0; i < stride; ++i) {
      int32_t ss = 1 << (kPrecisionBits - 1);
      const uint8_t* p = in.data.data() + static_cast<std::size_t>(ymin) * stride + i;
      for (int y = 0; y < count; ++y, p += stride) ss += *p * k[y];
      dst[i] = clip8(ss);
    }
  }
}

}  // namespace

RgbImage resize_bicubic(const RgbImage& in, int out_width, int out_height) {
  if (in.width <= 0 || in.height <= 0 ||
      in.data.size() != static_cast<std::size_t>(in.width) * in.height * 3) {
    throw Error("resize_bicubic: invalid input image " + std::to_string(in.width) + "x" +
                std::to_string(in.height) + " with " + std::to_string(in.data.size()) +
                " bytes (expected width*height*3)");
  }
  if (out_width <= 0 || out_height <= 0) {
    throw Error("resize_bicubic: invalid output size " + std::to_string(out_width) + "x" +
                std::to_string(out_height) + " (both must be positive)");
  }
  if (out_width == in.width && out_height == in.height) return in;

  const bool need_horizontal = out_width != in.width;
  const bool need_vertical = out_height != in.height;
  const Coefficients horiz = precompute_coefficients(in.width, out_width);
  Coefficients vert = precompute_coefficients(in.height, out_height);

  // Rows of the source that the vertical pass reads (ImagingResampleInner's ybox).
  const int ybox_first = vert.bounds[0];
  const int ybox_last = vert.bounds[out_height * 2 - 2] + vert.bounds[out_height * 2 - 1];

  RgbImage result;
  if (need_horizontal) {
    for (int i = 0; i < out_height; ++i) vert.bounds[i * 2] -= ybox_first;
    RgbImage temp;
    temp.width = out_width;
    temp.height = ybox_last - ybox_first;
    temp.data.resize(static_cast<std::size_t>(temp.width) * temp.height * 3);
    resample_horizontal(in, ybox_first, horiz, temp);
    if (!need_vertical) return temp;
    result = std::move(temp);
  }
  const RgbImage& source = need_horizontal ? result : in;
  RgbImage out;
  out.width = out_width;
  out.height = out_height;
  out.data.resize(static_cast<std::size_t>(out_width) * out_height * 3);
  resample_vertical(source, vert.bounds, vert, out);
  return out;
}

}  // namespace flamingo
