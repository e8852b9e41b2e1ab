#include "kernels/row_ops.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "kernels/cpu_isa.h"
#include "kernels/exp_float.h"
#include "kernels/lanes_avx2.h"
#include "kernels/thread_pool.h"

namespace flamingo::kernels {
namespace {

// float32 <-> the element type: c10::BFloat16's conversions (exact widening; narrowing to
// nearest even, NaN to 0x7fc0), the ones LibTorch's ops use.
template <typename T>
inline float to_float(T v) {
  return static_cast<float>(v);
}
template <typename T>
inline T from_float(float f) {
  return T(f);
}
// The value a float32 result has once stored in T.
template <typename T>
inline float rounded(float f) {
  return to_float(from_float<T>(f));
}

using namespace exp_detail;  // the constants of exp_float (kernels/exp_float.h)
constexpr float kP[6] = {kP0, kP1, kP2, kP3, kP4, kP5};

// 8 lanes of exp_float (a NaN lane gives a finite value: swiglu's quotient is NaN anyway).
__attribute__((target("avx2"))) inline __m256 exp_avx2(__m256 x) {
  const __m256 xc = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(kExpLo)), _mm256_set1_ps(kExpHi));
  const __m256 n = _mm256_sub_ps(
      _mm256_add_ps(_mm256_mul_ps(xc, _mm256_set1_ps(kLog2e)), _mm256_set1_ps(kRound)),
      _mm256_set1_ps(kRound));
  const __m256 r = _mm256_sub_ps(_mm256_sub_ps(xc, _mm256_mul_ps(n, _mm256_set1_ps(kLn2Hi))),
                                 _mm256_mul_ps(n, _mm256_set1_ps(kLn2Lo)));
  __m256 p = _mm256_set1_ps(kP[0]);
  for (int i = 1; i < 6; ++i) p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(kP[i]));
  p = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(p, _mm256_mul_ps(r, r)), r), _mm256_set1_ps(1.f));
  const __m256i ni = _mm256_cvttps_epi32(n), half = _mm256_srai_epi32(ni, 1);
  const __m256i bias = _mm256_set1_epi32(127);
  const __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(half, bias), 23));
  const __m256 s2 = _mm256_castsi256_ps(
      _mm256_slli_epi32(_mm256_add_epi32(_mm256_sub_epi32(ni, half), bias), 23));
  __m256 e = _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
  e = _mm256_blendv_ps(e, _mm256_set1_ps(std::numeric_limits<float>::infinity()),
                       _mm256_cmp_ps(x, _mm256_set1_ps(kExpHi), _CMP_GT_OQ));
  return _mm256_blendv_ps(e, _mm256_setzero_ps(),
                          _mm256_cmp_ps(x, _mm256_set1_ps(kExpLo), _CMP_LT_OQ));
}

// 8 float32 lanes to bfloat16 as c10::BFloat16 narrows (nearest even, NaN to 0x7fc0), or kept
// as float32 (loads: lanes::load8).
__attribute__((target("avx2"))) inline __m256i narrow_bits(__m256 v) {
  const __m256i u = _mm256_castps_si256(v);
  const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  const __m256i r =
      _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)), odd), 16);
  return _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(r),
                                              _mm256_castsi256_ps(_mm256_set1_epi32(0x7fc0)),
                                              _mm256_cmp_ps(v, v, _CMP_UNORD_Q)));
}
__attribute__((target("avx2"))) inline __m256 round8(__m256 v, at::BFloat16*) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(narrow_bits(v), 16));
}
__attribute__((target("avx2"))) inline __m256 round8(__m256 v, float*) { return v; }
__attribute__((target("avx2"))) inline void store8(at::BFloat16* p, __m256 v) {
  const __m256i b = narrow_bits(v);
  const __m128i packed =
      _mm_packus_epi32(_mm256_castsi256_si128(b), _mm256_extracti128_si256(b, 1));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), packed);
}
__attribute__((target("avx2"))) inline void store8(float* p, __m256 v) { _mm256_storeu_ps(p, v); }

// sum(x[i]^2) of one row, each square in float32 (as LibTorch's pow(2)) and summed in float64
// in 8 lanes (element i into lane i % 8), the lanes then added as (l0 + l4) + (l2 + l6) and
// (l1 + l5) + (l3 + l7), those two last: sum_squares and sum_squares_avx2 give the same bits.
template <typename T>
void add_squares(double (&lane)[8], const T* x, int64_t i0, int64_t d) {
  for (int64_t i = i0; i < d; ++i) {
    const float v = to_float(x[i]);
    lane[i % 8] += static_cast<double>(v * v);
  }
}
inline double add_lanes(const double (&lane)[8]) {
  const double s0 = lane[0] + lane[4], s1 = lane[1] + lane[5], s2 = lane[2] + lane[6],
               s3 = lane[3] + lane[7];
  return (s0 + s2) + (s1 + s3);
}

template <typename T>
double sum_squares(const T* x, int64_t d) {
  double lane[8] = {};
  add_squares(lane, x, 0, d);
  return add_lanes(lane);
}

template <typename T>
__attribute__((target("avx2"))) double sum_squares_avx2(const T* x, int64_t d) {
  __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();  // lanes 0-3, 4-7
  int64_t i = 0;
  for (; i + 8 <= d; i += 8) {
    const __m256 v = lanes::load8(x + i);
    const __m256 sq = _mm256_mul_ps(v, v);
    lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(sq)));
    hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps(sq, 1)));
  }
  alignas(32) double lane[8];
  _mm256_store_pd(lane, lo);
  _mm256_store_pd(lane + 4, hi);
  add_squares(lane, x, i, d);
  return add_lanes(lane);
}

// y[i] = w[i] * rounded(x[i] * scale), rounded to T.
template <typename T>
__attribute__((target("avx2"))) void scale_row_avx2(const T* x, const T* w, T* y, int64_t d,
                                                    float scale) {
  int64_t i = 0;
  const __m256 sv = _mm256_set1_ps(scale);
  for (; i + 8 <= d; i += 8) {
    const __m256 xs = round8(_mm256_mul_ps(lanes::load8(x + i), sv), y);
    store8(y + i, _mm256_mul_ps(lanes::load8(w + i), xs));
  }
  for (; i < d; ++i) y[i] = from_float<T>(to_float(w[i]) * rounded<T>(to_float(x[i]) * scale));
}

template <typename T>
void rms_norm_rows(const T* x, const T* w, T* y, int64_t rows, int64_t d, float eps) {
  const bool avx2 = active_isa() >= Isa::kAvx2;
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * d;
    T* yr = y + r * d;
    const double sum = avx2 ? sum_squares_avx2(xr, d) : sum_squares(xr, d);
    const float variance = static_cast<float>(sum / static_cast<double>(d));
    const float scale = 1.f / std::sqrt(variance + eps);
    if (avx2) {
      scale_row_avx2(xr, w, yr, d, scale);
    } else {
      for (int64_t i = 0; i < d; ++i) {
        yr[i] = from_float<T>(to_float(w[i]) * rounded<T>(to_float(xr[i]) * scale));
      }
    }
  }
}

// One row of rotary_rows (half a multiple of 8): the same operations, 8 lanes at a time.
template <typename T>
__attribute__((target("avx2"))) void rotary_row_avx2(const T* x, const T* c, const T* s, T* y,
                                                     int64_t half) {
  const __m256 neg = _mm256_set1_ps(-0.f);
  for (int64_t i = 0; i < 2 * half; i += 8) {
    const __m256 rot =
        i < half ? _mm256_xor_ps(lanes::load8(x + i + half), neg) : lanes::load8(x + i - half);
    const __m256 a = round8(_mm256_mul_ps(lanes::load8(x + i), lanes::load8(c + i)), y);
    const __m256 b = round8(_mm256_mul_ps(rot, lanes::load8(s + i)), y);
    store8(y + i, _mm256_add_ps(a, b));
  }
}

template <typename T>
void rotary_rows(const T* x, const T* cos, const T* sin, T* y, int64_t tokens, int64_t heads,
                 int64_t d) {
  const int64_t half = d / 2;
  const bool avx2 = active_isa() >= Isa::kAvx2 && half % 8 == 0;
  for (int64_t t = 0; t < tokens; ++t) {
    const T* c = cos + t * d;
    const T* s = sin + t * d;
    for (int64_t h = 0; h < heads; ++h) {
      const T* xr = x + (t * heads + h) * d;
      T* yr = y + (t * heads + h) * d;
      if (avx2) {
        rotary_row_avx2(xr, c, s, yr, half);
        continue;
      }
      for (int64_t i = 0; i < d; ++i) {
        const float rot = i < half ? -to_float(xr[i + half]) : to_float(xr[i - half]);
        const float a = rounded<T>(to_float(xr[i]) * to_float(c[i]));
        const float b = rounded<T>(rot * to_float(s[i]));
        yr[i] = from_float<T>(a + b);
      }
    }
  }
}

template <typename T>
inline float swiglu_one(T g, T u) {
  const float gf = to_float(g);
  const float silu = rounded<T>(gf / (1.f + exp_float(-gf)));
  return silu * to_float(u);
}

template <typename T>
__attribute__((target("avx2"))) void swiglu_avx2(const T* g, const T* u, T* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 gf = lanes::load8(g + i);
    const __m256 e = exp_avx2(_mm256_xor_ps(gf, _mm256_set1_ps(-0.f)));  // exp(-g)
    const __m256 silu = round8(_mm256_div_ps(gf, _mm256_add_ps(_mm256_set1_ps(1.f), e)), y);
    store8(y + i, _mm256_mul_ps(silu, lanes::load8(u + i)));
  }
  for (; i < n; ++i) y[i] = from_float<T>(swiglu_one(g[i], u[i]));
}

template <typename T>
void swiglu_elements(const T* g, const T* u, T* y, int64_t n) {
  if (active_isa() >= Isa::kAvx2) {
    swiglu_avx2(g, u, y, n);
  } else {
    for (int64_t i = 0; i < n; ++i) y[i] = from_float<T>(swiglu_one(g[i], u[i]));
  }
}

// fn(r0, r1) over rows [0, rows) of `cols` elements each: split across the kernel pool when the
// work is large enough to pay for the hand-off (a 16-row step's RMSNorm, SwiGLU and rotary ran
// on the calling thread alone: ~9% of a bfloat16 `small` step at 16 rows). Each row's result
// depends on that row only, so the split does not change the bits.
template <typename Fn>
void for_rows(int64_t rows, int64_t cols, const Fn& fn) {
  constexpr int64_t kMinElements = 16384;
  ThreadPool& pool = kernel_pool();
  const int64_t tasks = std::min<int64_t>(rows, pool.threads());
  if (tasks < 2 || rows * cols < kMinElements) {
    fn(int64_t{0}, rows);
    return;
  }
  pool.run(tasks, [&](int64_t t) { fn(rows * t / tasks, rows * (t + 1) / tasks); });
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
  for_rows(rows, d, [&](int64_t r0, int64_t r1) {
    if (x.scalar_type() == at::kFloat) {
      rms_norm_rows(xc.data_ptr<float>() + r0 * d, wc.data_ptr<float>(),
                    y.data_ptr<float>() + r0 * d, r1 - r0, d, static_cast<float>(eps));
    } else {
      rms_norm_rows(xc.data_ptr<at::BFloat16>() + r0 * d, wc.data_ptr<at::BFloat16>(),
                    y.data_ptr<at::BFloat16>() + r0 * d, r1 - r0, d, static_cast<float>(eps));
    }
  });
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
  const int64_t heads = x.size(1), d = x.size(2), row = heads * d;
  for_rows(x.size(0), row, [&](int64_t t0, int64_t t1) {
    if (x.scalar_type() == at::kFloat) {
      rotary_rows(xc.data_ptr<float>() + t0 * row, cc.data_ptr<float>() + t0 * d,
                  sc.data_ptr<float>() + t0 * d, y.data_ptr<float>() + t0 * row, t1 - t0, heads, d);
    } else {
      rotary_rows(xc.data_ptr<at::BFloat16>() + t0 * row, cc.data_ptr<at::BFloat16>() + t0 * d,
                  sc.data_ptr<at::BFloat16>() + t0 * d, y.data_ptr<at::BFloat16>() + t0 * row,
                  t1 - t0, heads, d);
    }
  });
  return y;
}

at::Tensor swiglu(const at::Tensor& gate, const at::Tensor& up) {
  check_dtype(gate, "swiglu");
  TORCH_CHECK(gate.sizes() == up.sizes() && gate.scalar_type() == up.scalar_type(), "swiglu: gate ",
              gate.sizes(), " ", gate.scalar_type(), " and up ", up.sizes(), " ", up.scalar_type(),
              " differ");
  const at::Tensor gc = gate.contiguous(), uc = up.contiguous();
  at::Tensor y = at::empty_like(gc);
  // In chunks of 1024 elements (rows of the split), each element on its own.
  constexpr int64_t kChunk = 1024;
  const int64_t n = gc.numel();
  for_rows((n + kChunk - 1) / kChunk, kChunk, [&](int64_t c0, int64_t c1) {
    const int64_t i0 = c0 * kChunk, len = std::min(n, c1 * kChunk) - i0;
    if (gate.scalar_type() == at::kFloat) {
      swiglu_elements(gc.data_ptr<float>() + i0, uc.data_ptr<float>() + i0,
                      y.data_ptr<float>() + i0, len);
    } else {
      swiglu_elements(gc.data_ptr<at::BFloat16>() + i0, uc.data_ptr<at::BFloat16>() + i0,
                      y.data_ptr<at::BFloat16>() + i0, len);
    }
  });
  return y;
}

}  // namespace flamingo::kernels
