#include "kernels/int8_quant.h"

// GCC 12 warns about the undefined upper lanes that its own AVX-512 intrinsics start from: a
// false positive.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "kernels/int8_product.h"
#include "kernels/packed_weight.h"
#include "kernels/thread_pool.h"

namespace flamingo::kernels::detail {
namespace {

constexpr int64_t kGroup = kInt8Group;

// The scale of a group from its max |x| and whether all of it is finite, as the definition
// says (kernels/int8_product.h).
inline float group_scale(float amax, bool finite) {
  return finite ? amax / 127.f : std::numeric_limits<float>::quiet_NaN();
}

// quantize_activation_row with vectors: x / scale is IEEE division and rounding to nearest
// even is exact, so the bits are the scalar code's. Masked loads read zeros past k (and zeros
// quantize to 0).
__attribute__((target("avx512f,avx512bw,avx512vl"))) void row_avx512(const float* x, int64_t k,
                                                                     int8_t* q, float* scales) {
  const __m512 lo = _mm512_set1_ps(-127.f), hi = _mm512_set1_ps(127.f);
  for (int64_t g = 0, g0 = 0; g0 < k; ++g, g0 += kGroup) {
    const int64_t n = std::min(kGroup, k - g0);
    __m512 v[4];
    __m512 amax = _mm512_setzero_ps();
    __mmask16 finite = 0xFFFF;
    for (int i = 0; i < 4; ++i) {
      const int64_t left = std::clamp<int64_t>(n - 16 * i, 0, 16);
      const auto mask = static_cast<__mmask16>((uint32_t{1} << left) - 1);
      v[i] = _mm512_maskz_loadu_ps(mask, x + g0 + 16 * i);
      amax = _mm512_max_ps(amax, _mm512_abs_ps(v[i]));
      finite &= _mm512_cmp_ps_mask(_mm512_sub_ps(v[i], v[i]), _mm512_setzero_ps(), _CMP_EQ_OQ);
    }
    const float scale = group_scale(_mm512_reduce_max_ps(amax), finite == 0xFFFF);
    scales[g] = scale;
    if (!(scale > 0.f)) {
      std::memset(q + g0, 0, kGroup);
      continue;
    }
    const __m512 s = _mm512_set1_ps(scale);
    for (int i = 0; i < 4; ++i) {
      __m512 r = _mm512_roundscale_ps(_mm512_div_ps(v[i], s),
                                      _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      r = _mm512_min_ps(_mm512_max_ps(r, lo), hi);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(q + g0 + 16 * i),
                       _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(r)));
    }
  }
}

__attribute__((target("avx2,fma"))) void row_avx2(const float* x, int64_t k, int8_t* q,
                                                  float* scales) {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  const __m256 lo = _mm256_set1_ps(-127.f), hi = _mm256_set1_ps(127.f);
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  for (int64_t g = 0, g0 = 0; g0 < k; ++g, g0 += kGroup) {
    const int64_t n = std::min(kGroup, k - g0);
    __m256 v[8];
    __m256 amax = _mm256_setzero_ps(), bad = _mm256_setzero_ps();
    for (int i = 0; i < 8; ++i) {
      const __m256i mask =
          _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n - 8 * i)), lanes);
      v[i] = _mm256_maskload_ps(x + g0 + 8 * i, mask);
      amax = _mm256_max_ps(amax, _mm256_and_ps(v[i], abs_mask));
      bad = _mm256_or_ps(
          bad, _mm256_cmp_ps(_mm256_sub_ps(v[i], v[i]), _mm256_setzero_ps(), _CMP_NEQ_UQ));
    }
    alignas(32) float m[8];
    _mm256_store_ps(m, amax);
    float best = m[0];
    for (int i = 1; i < 8; ++i) best = std::max(best, m[i]);
    const float scale = group_scale(best, _mm256_movemask_ps(bad) == 0);
    scales[g] = scale;
    if (!(scale > 0.f)) {
      std::memset(q + g0, 0, kGroup);
      continue;
    }
    const __m256 s = _mm256_set1_ps(scale);
    for (int i = 0; i < 8; i += 2) {
      __m256i w[2];
      for (int h = 0; h < 2; ++h) {
        __m256 r = _mm256_round_ps(_mm256_div_ps(v[i + h], s),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        w[h] = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(r, lo), hi));
      }
      // 16 int32 -> 16 int8 in order (packs work per 128-bit lane: fix the order after).
      const __m256i w16 = _mm256_permute4x64_epi64(_mm256_packs_epi32(w[0], w[1]), 0xD8);
      const __m128i b =
          _mm_packs_epi16(_mm256_castsi256_si128(w16), _mm256_extracti128_si256(w16, 1));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(q + g0 + 8 * i), b);
    }
  }
}

}  // namespace

void quantize_rows(const float* x, int64_t m, int64_t k, QuantExtra extra, Isa isa, QuantX& qx) {
  qx.groups = (k + kGroup - 1) / kGroup;
  qx.kp = qx.groups * kGroup;
  const int64_t rows = extra == QuantExtra::kTileRows ? (m + 15) / 16 * 16 : m;
  qx.q.resize(static_cast<size_t>(rows * qx.kp));
  std::fill(qx.q.begin() + m * qx.kp, qx.q.end(), int8_t{0});
  qx.s.resize(static_cast<size_t>(m * qx.groups));
  qx.a.resize(extra == QuantExtra::kMagnitudes ? static_cast<size_t>(m * qx.kp) : 0);
  qx.start.resize(extra == QuantExtra::kStartSums ? static_cast<size_t>(m * qx.groups) : 0);
  const auto quantize = isa >= Isa::kAvx512 ? row_avx512
                        : isa >= Isa::kAvx2 ? row_avx2
                                            : quantize_activation_row;
  auto row = [&](int64_t r) {
    int8_t* q = qx.q.data() + r * qx.kp;
    quantize(x + r * k, k, q, qx.s.data() + r * qx.groups);
    if (extra == QuantExtra::kStartSums) {
      for (int64_t g = 0; g < qx.groups; ++g) {
        int32_t sum = 0;
        for (int64_t i = 0; i < kGroup; ++i) sum += q[g * kGroup + i];
        qx.start[r * qx.groups + g] = -128 * sum;
      }
    } else if (extra == QuantExtra::kMagnitudes) {
      uint8_t* a = qx.a.data() + r * qx.kp;
      for (int64_t i = 0; i < qx.kp; ++i) a[i] = static_cast<uint8_t>(std::abs(q[i]));
    }
  };
  constexpr int64_t kRowsPerTask = 8;
  if (m * k < (int64_t{1} << 16)) {
    for (int64_t r = 0; r < m; ++r) row(r);
  } else {
    kernel_pool().run((m + kRowsPerTask - 1) / kRowsPerTask, [&](int64_t t) {
      for (int64_t r = t * kRowsPerTask; r < std::min(m, (t + 1) * kRowsPerTask); ++r) row(r);
    });
  }
}

}  // namespace flamingo::kernels::detail
