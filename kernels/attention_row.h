// One query row of attention against `ctx` keys and values, shared by the attention kernels
// (row_attention: attend_row; paged_attention: attend_heads, several heads of a token with
// each K/V row read once, the same bits per head): two passes (scores, then the weighted sum
// of values) in float32, inner loops over head_dim, in portable C++ or AVX2 with the same bits.
// The result depends only on this row's query and its keys/values, never on other rows, so
// every caller is batch-invariant. Thread-safe.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "kernels/lanes_avx2.h"

namespace flamingo::kernels {

// Per-thread scratch of attend_row.
struct AttendScratch {
  std::vector<float> scores, qf, acc, inv;
};

namespace attention_detail {

// The score's dot product: 8 partial sums (partial u takes i = u, u + 8, ... < d / 8 * 8, each
// product rounded, then added), a fixed tree over them, then the d % 8 tail added in order.
// Below: the same arithmetic in scalar C++ and in 8-lane AVX2 (separate multiply and add, no
// FMA), so both give the same bits.
inline float tree8(const float* p) {
  return ((p[0] + p[1]) + (p[2] + p[3])) + ((p[4] + p[5]) + (p[6] + p[7]));
}

template <typename T>
inline float dot_scalar(const float* qf, const T* k, int64_t d) {
  float part[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
  int64_t i = 0;
  for (; i + 8 <= d; i += 8) {
    for (int u = 0; u < 8; ++u) part[u] += qf[i + u] * static_cast<float>(k[i + u]);
  }
  float dot = tree8(part);
  for (; i < d; ++i) dot += qf[i] * static_cast<float>(k[i]);
  return dot;
}

// acc[i] += p * v[i] (the product rounded, then added).
template <typename T>
inline void axpy_scalar(float p, const T* v, float* acc, int64_t d) {
  for (int64_t i = 0; i < d; ++i) acc[i] += p * static_cast<float>(v[i]);
}

using lanes::load8;  // 8 values of T as float32 (kernels/lanes_avx2.h)

// Asks for the cache lines of a K/V row of d values ahead of use: rows of a paged cache are a
// head's slice of a longer row (one stride apart), which the hardware prefetchers miss.
template <typename T>
__attribute__((target("avx2"))) inline void prefetch_row(const T* row, int64_t d) {
  const char* p = reinterpret_cast<const char*>(row);
  for (int64_t b = 0; b < d * static_cast<int64_t>(sizeof(T)); b += 64) {
    _mm_prefetch(p + b, _MM_HINT_T0);
  }
}
constexpr int64_t kRowsAhead = 8;

// dot_scalar of four (query, key) pairs at once (four independent chains; each pair's
// arithmetic as there). One query against four keys, or four heads' queries against their
// slices of one key row.
template <typename T>
__attribute__((target("avx2"))) inline void dot4_avx2(const float* const* qf, const T* const* k,
                                                      int64_t d, float* out) {
  __m256 part[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                    _mm256_setzero_ps()};
  int64_t i = 0;
  for (; i + 8 <= d; i += 8) {
#pragma GCC unroll 4
    for (int r = 0; r < 4; ++r) {
      part[r] = _mm256_add_ps(part[r], _mm256_mul_ps(_mm256_loadu_ps(qf[r] + i), load8(k[r] + i)));
    }
  }
  for (int r = 0; r < 4; ++r) {
    alignas(32) float p[8];
    _mm256_store_ps(p, part[r]);
    float dot = tree8(p);
    for (int64_t t = i; t < d; ++t) dot += qf[r][t] * static_cast<float>(k[r][t]);
    out[r] = dot;
  }
}

// acc[i] += sum over j of p[j] * v_j[i], added in increasing j (each product rounded, then
// added: axpy_scalar's arithmetic from acc's value on), 32 then 8 elements of acc held in
// registers across all j. Prefetch: ask for row j + kRowsAhead ahead of use.
template <typename T, bool Prefetch = true, typename ValueAt>
__attribute__((target("avx2"))) inline void weighted_sum_avx2(const float* p, int64_t ctx,
                                                              ValueAt value_at, float* acc,
                                                              int64_t d) {
  int64_t i = 0;
  for (; i + 32 <= d; i += 32) {
    __m256 a[4];
    for (int r = 0; r < 4; ++r) a[r] = _mm256_loadu_ps(acc + i + 8 * r);
    for (int64_t j = 0; j < ctx; ++j) {
      if (Prefetch && i == 0 && j + kRowsAhead < ctx) prefetch_row(value_at(j + kRowsAhead), d);
      const __m256 pv = _mm256_set1_ps(p[j]);
      const T* v = value_at(j) + i;
#pragma GCC unroll 4
      for (int r = 0; r < 4; ++r) a[r] = _mm256_add_ps(a[r], _mm256_mul_ps(pv, load8(v + 8 * r)));
    }
    for (int r = 0; r < 4; ++r) _mm256_storeu_ps(acc + i + 8 * r, a[r]);
  }
  for (; i + 8 <= d; i += 8) {
    __m256 a = _mm256_loadu_ps(acc + i);
    for (int64_t j = 0; j < ctx; ++j) {
      a = _mm256_add_ps(a, _mm256_mul_ps(_mm256_set1_ps(p[j]), load8(value_at(j) + i)));
    }
    _mm256_storeu_ps(acc + i, a);
  }
  for (; i < d; ++i) {
    float a = acc[i];
    for (int64_t j = 0; j < ctx; ++j) a += p[j] * static_cast<float>(value_at(j)[i]);
    acc[i] = a;
  }
}

// The row's two passes; inlined into attend_vec (compiled for AVX2) and attend_plain.
template <bool Avx2, typename T, typename KeyAt, typename ValueAt>
__attribute__((always_inline)) inline void attend_body(const T* q_row, int64_t d, float scale,
                                                       int64_t ctx, KeyAt key_at, ValueAt value_at,
                                                       T* out_row, AttendScratch& s) {
  s.qf.resize(d);
  s.acc.assign(d, 0.f);
  s.scores.resize(ctx);
  for (int64_t i = 0; i < d; ++i) s.qf[i] = static_cast<float>(q_row[i]) * scale;
  float max_score = -std::numeric_limits<float>::infinity();
  int64_t j0 = 0;
  if constexpr (Avx2) {
    for (; j0 + 4 <= ctx; j0 += 4) {
      for (int64_t j = j0 + kRowsAhead; j < std::min(ctx, j0 + kRowsAhead + 4); ++j) {
        prefetch_row(key_at(j), d);
      }
      const T* keys[4] = {key_at(j0), key_at(j0 + 1), key_at(j0 + 2), key_at(j0 + 3)};
      const float* q = s.qf.data();
      const float* qs[4] = {q, q, q, q};
      dot4_avx2(qs, keys, d, s.scores.data() + j0);
    }
  }
  for (int64_t j = j0; j < ctx; ++j) s.scores[j] = dot_scalar(s.qf.data(), key_at(j), d);
  for (int64_t j = 0; j < ctx; ++j) max_score = std::max(max_score, s.scores[j]);
  float sum = 0.f;
  for (int64_t j = 0; j < ctx; ++j) {
    s.scores[j] = std::exp(s.scores[j] - max_score);
    sum += s.scores[j];
  }
  if constexpr (Avx2) {
    weighted_sum_avx2<T>(s.scores.data(), ctx, value_at, s.acc.data(), d);
  } else {
    for (int64_t j = 0; j < ctx; ++j) axpy_scalar(s.scores[j], value_at(j), s.acc.data(), d);
  }
  const float inv = sum > 0.f ? 1.f / sum : 0.f;
  for (int64_t i = 0; i < d; ++i) out_row[i] = static_cast<T>(s.acc[i] * inv);
}

// Asks for `bytes` from p on (a K/V row's slice of several heads) ahead of use.
inline void prefetch_span(const void* p, int64_t bytes) {
  for (int64_t b = 0; b < bytes; b += 64) {
    _mm_prefetch(static_cast<const char*>(p) + b, _MM_HINT_T0);
  }
}

// attend_body for nh heads of one query token at once: query h at q_rows + h * d, its key and
// value j at key_at(j) + h * d and value_at(j) + h * d (the heads side by side in each K/V row,
// as in a KV cache), output h at out_rows + h * d. Per head the same arithmetic in the same
// order as attend_body (so the same bits); the difference is the walk: each K/V row is read
// once for all nh heads, in order, rather than one head's slice per pass over the context.
template <bool Avx2, typename T, typename KeyAt, typename ValueAt>
__attribute__((always_inline)) inline void attend_heads_body(const T* q_rows, int64_t nh, int64_t d,
                                                             float scale, int64_t ctx, KeyAt key_at,
                                                             ValueAt value_at, T* out_rows,
                                                             AttendScratch& s) {
  s.qf.resize(nh * d);
  s.acc.assign(nh * d, 0.f);
  s.scores.resize(nh * ctx);
  s.inv.resize(nh);
  for (int64_t i = 0; i < nh * d; ++i) s.qf[i] = static_cast<float>(q_rows[i]) * scale;
  const int64_t span = nh * d * static_cast<int64_t>(sizeof(T));
  for (int64_t j = 0; j < ctx; ++j) {
    if (j + kRowsAhead < ctx) prefetch_span(key_at(j + kRowsAhead), span);
    const T* row = key_at(j);
    int64_t h = 0;
    if constexpr (Avx2) {
      for (; h + 4 <= nh; h += 4) {
        const float* qs[4] = {&s.qf[h * d], &s.qf[(h + 1) * d], &s.qf[(h + 2) * d],
                              &s.qf[(h + 3) * d]};
        const T* ks[4] = {row + h * d, row + (h + 1) * d, row + (h + 2) * d, row + (h + 3) * d};
        float dots[4];
        dot4_avx2(qs, ks, d, dots);
        for (int r = 0; r < 4; ++r) s.scores[(h + r) * ctx + j] = dots[r];
      }
    }
    for (; h < nh; ++h) s.scores[h * ctx + j] = dot_scalar(&s.qf[h * d], row + h * d, d);
  }
  for (int64_t h = 0; h < nh; ++h) {
    float* sc = &s.scores[h * ctx];
    float max_score = -std::numeric_limits<float>::infinity();
    for (int64_t j = 0; j < ctx; ++j) max_score = std::max(max_score, sc[j]);
    float sum = 0.f;
    for (int64_t j = 0; j < ctx; ++j) {
      sc[j] = std::exp(sc[j] - max_score);
      sum += sc[j];
    }
    s.inv[h] = sum > 0.f ? 1.f / sum : 0.f;
  }
  // Value rows in chunks of kRowsAhead (they stay in L1 while every head's sums take them).
  for (int64_t j0 = 0; j0 < ctx; j0 += kRowsAhead) {
    const int64_t rows = std::min(kRowsAhead, ctx - j0);
    for (int64_t h = 0; h < nh; ++h) {
      for (int64_t j = j0 + kRowsAhead; j < std::min(ctx, j0 + 2 * kRowsAhead); ++j) {
        prefetch_span(value_at(j) + h * d, d * static_cast<int64_t>(sizeof(T)));  // the next chunk
      }
      const float* p = &s.scores[h * ctx + j0];
      float* acc = &s.acc[h * d];
      if constexpr (Avx2) {
        weighted_sum_avx2<T, false>(
            p, rows, [&](int64_t j) { return value_at(j0 + j) + h * d; }, acc, d);
      } else {
        for (int64_t j = 0; j < rows; ++j) axpy_scalar(p[j], value_at(j0 + j) + h * d, acc, d);
      }
    }
  }
  for (int64_t h = 0; h < nh; ++h) {
    for (int64_t i = 0; i < d; ++i)
      out_rows[h * d + i] = static_cast<T>(s.acc[h * d + i] * s.inv[h]);
  }
}

template <typename T, typename KeyAt, typename ValueAt>
__attribute__((target("avx2"))) void attend_heads_vec(const T* q_rows, int64_t nh, int64_t d,
                                                      float scale, int64_t ctx, KeyAt key_at,
                                                      ValueAt value_at, T* out_rows,
                                                      AttendScratch& s) {
  attend_heads_body<true>(q_rows, nh, d, scale, ctx, key_at, value_at, out_rows, s);
}

template <typename T, typename KeyAt, typename ValueAt>
void attend_heads_plain(const T* q_rows, int64_t nh, int64_t d, float scale, int64_t ctx,
                        KeyAt key_at, ValueAt value_at, T* out_rows, AttendScratch& s) {
  attend_heads_body<false>(q_rows, nh, d, scale, ctx, key_at, value_at, out_rows, s);
}

template <typename T, typename KeyAt, typename ValueAt>
__attribute__((target("avx2"))) void attend_vec(const T* q_row, int64_t d, float scale, int64_t ctx,
                                                KeyAt key_at, ValueAt value_at, T* out_row,
                                                AttendScratch& s) {
  attend_body<true>(q_row, d, scale, ctx, key_at, value_at, out_row, s);
}

template <typename T, typename KeyAt, typename ValueAt>
void attend_plain(const T* q_row, int64_t d, float scale, int64_t ctx, KeyAt key_at,
                  ValueAt value_at, T* out_row, AttendScratch& s) {
  attend_body<false>(q_row, d, scale, ctx, key_at, value_at, out_row, s);
}

}  // namespace attention_detail

// attend_row for nh heads of one query token whose keys and values hold the heads side by side
// (see attend_heads_body): the same bits per head as attend_row, each K/V row read once.
template <typename T, typename KeyAt, typename ValueAt>
inline void attend_heads(const T* q_rows, int64_t nh, int64_t d, float scale, int64_t ctx,
                         KeyAt key_at, ValueAt value_at, T* out_rows, AttendScratch& s, bool avx2) {
  if (avx2) {
    attention_detail::attend_heads_vec(q_rows, nh, d, scale, ctx, key_at, value_at, out_rows, s);
  } else {
    attention_detail::attend_heads_plain(q_rows, nh, d, scale, ctx, key_at, value_at, out_rows, s);
  }
}

// q_row [d] -> out_row [d] = softmax(q . k_j * scale) . v_j over j in [0, ctx); key_at(j) and
// value_at(j) return pointers to the d elements of key / value j. avx2: run the inner loops
// on AVX2 (the same bits as without; the callers pass active_isa() >= Isa::kAvx2).
template <typename T, typename KeyAt, typename ValueAt>
inline void attend_row(const T* q_row, int64_t d, float scale, int64_t ctx, KeyAt key_at,
                       ValueAt value_at, T* out_row, AttendScratch& s, bool avx2) {
  if (avx2) {
    attention_detail::attend_vec(q_row, d, scale, ctx, key_at, value_at, out_row, s);
  } else {
    attention_detail::attend_plain(q_row, d, scale, ctx, key_at, value_at, out_row, s);
  }
}

}  // namespace flamingo::kernels
