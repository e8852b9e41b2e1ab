// Internal to the kernels: a 16 x 16 transpose of 32-bit values in AVX-512 registers (the AMX
// products' packing, the int8 weights' packed layout). Torch-free. Needs AVX-512F at run time.
#pragma once

// GCC 12 warns about the undefined lanes its own AVX-512 intrinsics start from: a false positive.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <cstdint>

namespace flamingo::kernels::detail {

// out[j][i] = in[i][j] for a 16 x 16 block of 32-bit values (rows ld_in / ld_out apart).
__attribute__((target("avx512f"))) inline void transpose16(const void* in, int64_t ld_in, void* out,
                                                           int64_t ld_out) {
  const auto* src = static_cast<const float*>(in);
  auto* dst = static_cast<float*>(out);
  __m512 r[16], t[16];
  for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(src + i * ld_in);
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  // r[4i + j], 128-bit lane L: rows 4i..4i+3 at column 4L + j.
  for (int i = 0; i < 4; ++i) {
    const __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 2]);
    const __m512d c = _mm512_castps_pd(t[4 * i + 1]), d = _mm512_castps_pd(t[4 * i + 3]);
    r[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
    r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
    r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(c, d));
    r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(c, d));
  }
  for (int j = 0; j < 4; ++j) {
    const __m512 even01 = _mm512_shuffle_f32x4(r[j], r[4 + j], 0x88);
    const __m512 even23 = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0x88);
    const __m512 odd01 = _mm512_shuffle_f32x4(r[j], r[4 + j], 0xdd);
    const __m512 odd23 = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0xdd);
    _mm512_storeu_ps(dst + j * ld_out, _mm512_shuffle_f32x4(even01, even23, 0x88));
    _mm512_storeu_ps(dst + (8 + j) * ld_out, _mm512_shuffle_f32x4(even01, even23, 0xdd));
    _mm512_storeu_ps(dst + (4 + j) * ld_out, _mm512_shuffle_f32x4(odd01, odd23, 0x88));
    _mm512_storeu_ps(dst + (12 + j) * ld_out, _mm512_shuffle_f32x4(odd01, odd23, 0xdd));
  }
}

}  // namespace flamingo::kernels::detail

#pragma GCC diagnostic pop
