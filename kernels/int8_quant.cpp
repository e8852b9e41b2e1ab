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

// One group of n <= 64 values with vectors: false when one is not finite (nothing written);
// else *scale = max |x| / 127 and q[0..64) the quantized values (zeros past n, all zeros when
// the scale is 0). x / scale is IEEE division and rounding to nearest even is exact, so the
// bits are the scalar code's (kernels/packed_weight.h, kernels/int8_product.h).
__attribute__((target("avx512f,avx512bw,avx512vl"))) bool group_avx512(const float* x, int64_t n,
                                                                       int8_t* q, float* scale) {
  __m512 v[4];
  __m512 amax = _mm512_setzero_ps();
  __mmask16 finite = 0xFFFF;
  for (int i = 0; i < 4; ++i) {
    const int64_t left = std::clamp<int64_t>(n - 16 * i, 0, 16);
    const auto mask = static_cast<__mmask16>((uint32_t{1} << left) - 1);
    v[i] = _mm512_maskz_loadu_ps(mask, x + 16 * i);
    amax = _mm512_max_ps(amax, _mm512_abs_ps(v[i]));
    finite &= _mm512_cmp_ps_mask(_mm512_sub_ps(v[i], v[i]), _mm512_setzero_ps(), _CMP_EQ_OQ);
  }
  if (finite != 0xFFFF) return false;
  *scale = _mm512_reduce_max_ps(amax) / 127.f;
  if (!(*scale > 0.f)) {
    std::memset(q, 0, kGroup);
    return true;
  }
  const __m512 s = _mm512_set1_ps(*scale);
  const __m512 lo = _mm512_set1_ps(-127.f), hi = _mm512_set1_ps(127.f);
  for (int i = 0; i < 4; ++i) {
    __m512 r =
        _mm512_roundscale_ps(_mm512_div_ps(v[i], s), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    r = _mm512_min_ps(_mm512_max_ps(r, lo), hi);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + 16 * i),
                     _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(r)));
  }
  return true;
}

__attribute__((target("avx2,fma"))) bool group_avx2(const float* x, int64_t n, int8_t* q,
                                                    float* scale) {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  __m256 v[8];
  __m256 amax = _mm256_setzero_ps(), bad = _mm256_setzero_ps();
  for (int i = 0; i < 8; ++i) {
    const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n - 8 * i)), lanes);
    v[i] = _mm256_maskload_ps(x + 8 * i, mask);
    amax = _mm256_max_ps(amax, _mm256_and_ps(v[i], abs_mask));
    bad = _mm256_or_ps(bad,
                       _mm256_cmp_ps(_mm256_sub_ps(v[i], v[i]), _mm256_setzero_ps(), _CMP_NEQ_UQ));
  }
  if (_mm256_movemask_ps(bad) != 0) return false;
  alignas(32) float m[8];
  _mm256_store_ps(m, amax);
  float best = m[0];
  for (int i = 1; i < 8; ++i) best = std::max(best, m[i]);
  *scale = best / 127.f;
  if (!(*scale > 0.f)) {
    std::memset(q, 0, kGroup);
    return true;
  }
  const __m256 s = _mm256_set1_ps(*scale);
  const __m256 lo = _mm256_set1_ps(-127.f), hi = _mm256_set1_ps(127.f);
  for (int i = 0; i < 8; i += 2) {
    __m256i w[2];
    for (int h = 0; h < 2; ++h) {
      const __m256 r = _mm256_round_ps(_mm256_div_ps(v[i + h], s),
                                       _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      w[h] = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(r, lo), hi));
    }
    // 16 int32 -> 16 int8 in order (packs work per 128-bit lane: fix the order after).
    const __m256i w16 = _mm256_permute4x64_epi64(_mm256_packs_epi32(w[0], w[1]), 0xD8);
    const __m128i b =
        _mm_packs_epi16(_mm256_castsi256_si128(w16), _mm256_extracti128_si256(w16, 1));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + 8 * i), b);
  }
  return true;
}

using GroupFn = bool (*)(const float*, int64_t, int8_t*, float*);
GroupFn group_fn(Isa isa) {
  return isa >= Isa::kAvx512 ? group_avx512 : isa >= Isa::kAvx2 ? group_avx2 : nullptr;
}

// quantize_activation_row with vectors (a non-finite group: scale NaN, q zeros).
void activation_row(GroupFn group, const float* x, int64_t k, int8_t* q, float* scales) {
  for (int64_t g = 0, g0 = 0; g0 < k; ++g, g0 += kGroup) {
    if (!group(x + g0, std::min(kGroup, k - g0), q + g0, &scales[g])) {
      scales[g] = std::numeric_limits<float>::quiet_NaN();
      std::memset(q + g0, 0, kGroup);
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
  const GroupFn group = group_fn(isa);
  auto row = [&](int64_t r) {
    int8_t* q = qx.q.data() + r * qx.kp;
    if (group != nullptr) {
      activation_row(group, x + r * k, k, q, qx.s.data() + r * qx.groups);
    } else {
      quantize_activation_row(x + r * k, k, q, qx.s.data() + r * qx.groups);
    }
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

void quantize_weight_row(const float* w, int64_t k, int8_t* q, float* scales, Isa isa) {
  const GroupFn group = group_fn(isa);
  alignas(64) int8_t tmp[kGroup];
  for (int64_t g = 0, g0 = 0; g0 < k; ++g, g0 += kGroup) {
    const int64_t n = std::min(kGroup, k - g0);
    if (group != nullptr && group(w + g0, n, tmp, &scales[g])) {
      std::memcpy(q + g0, tmp, static_cast<size_t>(n));
    } else {  // the scalar code for every value it may see
      quantize_int8_row(w + g0, n, kGroup, q + g0, &scales[g]);
    }
  }
}

}  // namespace flamingo::kernels::detail
