#include "kernels/row_ops.h"

#include <cmath>
#include <cstdint>
#include <cstring>

namespace flamingo::kernels {
namespace {

// float32 <-> the element type, rounding to nearest even as c10::BFloat16 does (NaN stays NaN).
inline float to_float(float v) { return v; }
inline float to_float(at::BFloat16 v) {
  const uint32_t u = static_cast<uint32_t>(v.x) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
template <typename T>
inline T from_float(float f) {
  if constexpr (std::is_same_v<T, float>) {
    return f;
  } else {
    uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    at::BFloat16 b;
    b.x = std::isnan(f) ? uint16_t{0x7fc0}
                        : static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    return b;
  }
}
// The value a float32 result has once stored in T.
template <typename T>
inline float rounded(float f) {
  return to_float(from_float<T>(f));
}

template <typename T>
void rms_norm_rows(const T* x, const T* w, T* y, int64_t rows, int64_t d, float eps) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * d;
    T* yr = y + r * d;
    double sum = 0;
    for (int64_t i = 0; i < d; ++i) {
      const float v = to_float(xr[i]);
      sum += static_cast<double>(v * v);  // the square in float32, as LibTorch's pow(2)
    }
    const float variance = static_cast<float>(sum / static_cast<double>(d));
    const float scale = 1.f / std::sqrt(variance + eps);
    for (int64_t i = 0; i < d; ++i) {
      yr[i] = from_float<T>(to_float(w[i]) * rounded<T>(to_float(xr[i]) * scale));
    }
  }
}

template <typename T>
void rotary_rows(const T* x, const T* cos, const T* sin, T* y, int64_t tokens, int64_t heads,
                 int64_t d) {
  const int64_t half = d / 2;
  for (int64_t t = 0; t < tokens; ++t) {
    const T* c = cos + t * d;
    const T* s = sin + t * d;
    for (int64_t h = 0; h < heads; ++h) {
      const T* xr = x + (t * heads + h) * d;
      T* yr = y + (t * heads + h) * d;
      for (int64_t i = 0; i < d; ++i) {
        const float rot = i < half ? -to_float(xr[i + half]) : to_float(xr[i - half]);
        const float a = rounded<T>(to_float(xr[i]) * to_float(c[i]));
        const float b = rounded<T>(rot * to_float(s[i]));
        yr[i] = from_float<T>(a + b);
      }
    }
  }
}

void check_dtype(const at::Tensor& x, const char* what) {
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16, what,
              ": expected float32 or bfloat16, got ", x.scalar_type());
  TORCH_CHECK(x.device().is_cpu(), what, ": CPU kernel got a ", x.device(), " tensor");
}

}  // namespace

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& w, double eps) {
  check_dtype(x, "rms_norm");
  TORCH_CHECK(x.dim() >= 1 && w.dim() == 1 && w.size(0) == x.size(-1), "rms_norm: weight ",
              w.sizes(), " does not match x ", x.sizes());
  TORCH_CHECK(w.scalar_type() == x.scalar_type(), "rms_norm: weight dtype ", w.scalar_type(),
              " differs from x's ", x.scalar_type());
  const at::Tensor xc = x.contiguous(), wc = w.contiguous();
  at::Tensor y = at::empty_like(xc);
  const int64_t d = x.size(-1), rows = d == 0 ? 0 : xc.numel() / d;
  if (x.scalar_type() == at::kFloat) {
    rms_norm_rows(xc.data_ptr<float>(), wc.data_ptr<float>(), y.data_ptr<float>(), rows, d,
                  static_cast<float>(eps));
  } else {
    rms_norm_rows(xc.data_ptr<at::BFloat16>(), wc.data_ptr<at::BFloat16>(),
                  y.data_ptr<at::BFloat16>(), rows, d, static_cast<float>(eps));
  }
  return y;
}

at::Tensor rotary(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  check_dtype(x, "rotary");
  TORCH_CHECK(x.dim() == 3 && x.size(2) % 2 == 0, "rotary: x must be [T, H, D] with D even, got ",
              x.sizes());
  TORCH_CHECK(cos.dim() == 2 && cos.sizes() == sin.sizes() && cos.size(0) == x.size(0) &&
                  cos.size(1) == x.size(2),
              "rotary: cos/sin must be [T, D] = [", x.size(0), ", ", x.size(2), "], got ",
              cos.sizes(), " and ", sin.sizes());
  TORCH_CHECK(cos.scalar_type() == x.scalar_type() && sin.scalar_type() == x.scalar_type(),
              "rotary: cos/sin must have x's dtype ", x.scalar_type());
  const at::Tensor xc = x.contiguous(), cc = cos.contiguous(), sc = sin.contiguous();
  at::Tensor y = at::empty_like(xc);
  if (x.scalar_type() == at::kFloat) {
    rotary_rows(xc.data_ptr<float>(), cc.data_ptr<float>(), sc.data_ptr<float>(),
                y.data_ptr<float>(), x.size(0), x.size(1), x.size(2));
  } else {
    rotary_rows(xc.data_ptr<at::BFloat16>(), cc.data_ptr<at::BFloat16>(),
                sc.data_ptr<at::BFloat16>(), y.data_ptr<at::BFloat16>(), x.size(0), x.size(1),
                x.size(2));
  }
  return y;
}

}  // namespace flamingo::kernels
