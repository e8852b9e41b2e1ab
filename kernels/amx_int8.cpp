#include "kernels/amx_int8.h"

// GCC 12 warns about the undefined lanes its own AVX-512 intrinsics start from
// (_mm512_undefined_*): a false positive.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <utility>

#include "kernels/amx_tiles.h"

namespace flamingo::kernels {
namespace {

#define FLAMINGO_AMX __attribute__((target("amx-tile,amx-int8,avx512f,avx512bw")))

constexpr int64_t kTile = 16;        // x rows per A tile, weight rows per B tile
constexpr int64_t kLine = 64;        // bytes per tile row
constexpr int64_t kPrefetch = 2048;  // bytes ahead of the weight blocks

// Tiles 0-3: sums of A tile a and B tile b in tile 2 a + b (width x rows x 16 int32); 4-5: x
// A[a] (width rows x 64 K); 6-7: weights B[b] (16 K quads x 16 rows x 4 bytes).
FLAMINGO_AMX void configure(int64_t width) {
  detail::TileConfig c;
  for (int t = 0; t < 8; ++t) {
    c.rows[t] = static_cast<uint8_t>(t >= 6 ? kTile : width);
    c.colsb[t] = kLine;
  }
  detail::load_tile_config(c);
}

// One group: the running sums of A tile a and B tile b, kept in tile 2 a + b from the pass's
// first group on, gain A[a] x B[b] (exact int32 dots) and are stored to c[2 a + b], rows kLine
// bytes apart. Not zeroing the tiles per group saves a tile instruction per product; the
// group's own dots are the difference of two stored running sums.
template <int NA, int NB>
FLAMINGO_AMX void group_dots(const int8_t* a0, const int8_t* a1, int64_t lda, const int8_t* b0,
                             const int8_t* b1, bool zero, int32_t (*c)[kTile * kTile]) {
  if (zero) {
    _tile_zero(0);
    if constexpr (NB > 1) _tile_zero(1);
    if constexpr (NA > 1) _tile_zero(2);
    if constexpr (NA > 1 && NB > 1) _tile_zero(3);
  }
  _tile_loadd(4, a0, lda);
  if constexpr (NA > 1) _tile_loadd(5, a1, lda);
  _tile_loadd(6, b0, kLine);
  if constexpr (NB > 1) _tile_loadd(7, b1, kLine);
  _tile_dpbssd(0, 4, 6);
  if constexpr (NB > 1) _tile_dpbssd(1, 4, 7);
  if constexpr (NA > 1) _tile_dpbssd(2, 5, 6);
  if constexpr (NA > 1 && NB > 1) _tile_dpbssd(3, 5, 7);
  _tile_stored(0, c[0], kLine);
  if constexpr (NB > 1) _tile_stored(1, c[1], kLine);
  if constexpr (NA > 1) _tile_stored(2, c[2], kLine);
  if constexpr (NA > 1 && NB > 1) _tile_stored(3, c[3], kLine);
}

using GroupFn = void (*)(const int8_t*, const int8_t*, int64_t, const int8_t*, const int8_t*, bool,
                         int32_t (*)[kTile * kTile]);
constexpr GroupFn kGroupDots[2][2] = {{group_dots<1, 1>, group_dots<1, 2>},
                                      {group_dots<2, 1>, group_dots<2, 2>}};

// Running sums restart every kRestart groups: |sum| <= kRestart x 64 x 127 x 127 < 2^31.
constexpr int64_t kRestart = 1024;

// More than 16 x rows (columns_one_tile takes fewer): token tiles of 16 rows.
FLAMINGO_AMX void columns(const detail::QuantX& qx, int64_t m, const WeightView& w, float* y,
                          int64_t n0, int64_t n1) {
  const int64_t groups = qx.groups, kp = qx.kp;
  constexpr int64_t width = kTile;
  const int64_t tiles = (m + width - 1) / width;
  const auto* wq = static_cast<const int8_t*>(w.data);
  const int64_t b0 = n0 / kTile, b1 = (n1 + kTile - 1) / kTile;
  // The running sums stored after the last group and after the one before.
  alignas(64) int32_t c[2][4][kTile * kTile];
  // Float sums of x row i (of the pass) and block j at acc + (2 i + j) * 16.
  alignas(64) float acc[2 * kTile * 2 * kTile];
  configure(width);
  for (int64_t b = b0; b < b1; b += 2) {
    const int nb = b + 1 < b1 ? 2 : 1;
    const int8_t* wb0 = wq + b * groups * kInt8BlockBytes;
    const int8_t* wb1 = nb > 1 ? wb0 + groups * kInt8BlockBytes : wb0;
    const float* sw0 = w.scales + b * groups * kTile;
    // Up to two token tiles at a time: the first pair streams the block pair's weights from
    // memory, the next find them in L2.
    for (int64_t t = 0; t < tiles; t += 2) {
      const int na = t + 1 < tiles ? 2 : 1;
      const int64_t r0 = t * width, r1 = std::min(m, (t + na) * width);
      std::memset(acc, 0, sizeof(float) * (r1 - r0) * 2 * kTile);
      for (int64_t g = 0; g < groups; ++g) {
        if (t == 0) {
          for (int64_t l = 0; l < kInt8BlockBytes; l += kLine) {
            _mm_prefetch(reinterpret_cast<const char*>(wb0) + g * kInt8BlockBytes + kPrefetch + l,
                         _MM_HINT_T0);
            if (nb > 1) {
              _mm_prefetch(reinterpret_cast<const char*>(wb1) + g * kInt8BlockBytes + kPrefetch + l,
                           _MM_HINT_T0);
            }
          }
        }
        const bool restart = g % kRestart == 0;
        int32_t(*now)[kTile * kTile] = c[g % 2];
        const int32_t(*before)[kTile * kTile] = c[1 - g % 2];
        const int8_t* a0 = qx.q.data() + t * width * kp + g * kLine;
        kGroupDots[na - 1][nb - 1](a0, a0 + width * kp, kp, wb0 + g * kInt8BlockBytes,
                                   wb1 + g * kInt8BlockBytes, restart, now);
        __m512 sw[2];
        for (int j = 0; j < nb; ++j) {
          sw[j] = _mm512_loadu_ps(sw0 + (j * groups + g) * kTile);
        }
        for (int a = 0; a < na; ++a) {
          const int64_t i0 = (t + a) * width, rows = std::min(width, m - i0);
          for (int64_t i = 0; i < rows; ++i) {
            const __m512 sx = _mm512_set1_ps(qx.s[(i0 + i) * groups + g]);
            for (int j = 0; j < nb; ++j) {
              float* s = acc + (2 * (i0 + i - r0) + j) * kTile;
              __m512i sum = _mm512_load_si512(now[2 * a + j] + i * kTile);
              if (!restart) {
                sum = _mm512_sub_epi32(sum, _mm512_load_si512(before[2 * a + j] + i * kTile));
              }
              const __m512 d = _mm512_cvtepi32_ps(sum);
              _mm512_store_ps(s, _mm512_fmadd_ps(d, _mm512_mul_ps(sw[j], sx), _mm512_load_ps(s)));
            }
          }
        }
      }
      for (int64_t i = r0; i < r1; ++i) {
        for (int j = 0; j < nb; ++j) {
          const int64_t c0 = (b + j) * kTile, c1 = std::min(n1, c0 + kTile);
          std::memcpy(y + i * w.n + c0, acc + (2 * (i - r0) + j) * kTile,
                      sizeof(float) * (c1 - c0));
        }
      }
    }
  }
  _tile_release();
}

// One group's exact dots of the x tile and weight block wb's group g, from a zeroed C tile T,
// stored to c (rows kLine bytes apart).
template <int T>
FLAMINGO_AMX inline void one_tile_dots(const int8_t* xq, int64_t kp, const int8_t* wb, int64_t g,
                                       int32_t* c) {
  for (int64_t l = 0; l < kInt8BlockBytes; l += kLine) {
    _mm_prefetch(reinterpret_cast<const char*>(wb) + g * kInt8BlockBytes + kPrefetch + l,
                 _MM_HINT_T0);
  }
  if constexpr (T == 0) {  // the tile intrinsics take their register's number as a literal
    _tile_loadd(4, xq + g * kLine, kp);
    _tile_loadd(6, wb + g * kInt8BlockBytes, kLine);
    _tile_zero(0);
    _tile_dpbssd(0, 4, 6);
    _tile_stored(0, c, kLine);
  } else {
    _tile_loadd(5, xq + g * kLine, kp);
    _tile_loadd(7, wb + g * kInt8BlockBytes, kLine);
    _tile_zero(1);
    _tile_dpbssd(1, 5, 7);
    _tile_stored(1, c, kLine);
  }
}

// acc[i] += float(dots[i]) x (sw x sx[i]) for the M x rows: the definition's one fma per group.
template <int M>
FLAMINGO_AMX inline void one_tile_add(__m512 (&acc)[M], const int32_t* dots, const float* sw,
                                      const float* sx, int64_t groups) {
  const __m512 swg = _mm512_load_ps(sw);
#pragma GCC unroll 16
  for (int i = 0; i < M; ++i) {
    const __m512 d = _mm512_cvtepi32_ps(_mm512_load_si512(dots + i * kTile));
    acc[i] = _mm512_fmadd_ps(d, _mm512_mul_ps(swg, _mm512_set1_ps(sx[i * groups])), acc[i]);
  }
}

// x rows 1..16 (one A tile): one block of 16 weight rows at a time, its M x 16 float sums held
// in registers across all groups and stored once. Each group's dots come from a zeroed C tile
// (no running sums, so no subtraction), two tiles alternating so that the tile unit can work
// on group g + 1 while the vector units add group g.
template <int M>
FLAMINGO_AMX void columns_one_tile(const detail::QuantX& qx, const WeightView& w, float* y,
                                   int64_t n0, int64_t n1) {
  const int64_t groups = qx.groups, kp = qx.kp;
  const auto* wq = static_cast<const int8_t*>(w.data);
  alignas(64) int32_t c[2][kTile * kTile];
  const int8_t* xq = qx.q.data();
  const float* sx = qx.s.data();
  configure(M);
  for (int64_t b = n0 / kTile; b * kTile < n1; ++b) {
    const int8_t* wb = wq + b * groups * kInt8BlockBytes;
    const float* sw = w.scales + b * groups * kTile;
    __m512 acc[M];
#pragma GCC unroll 16
    for (int i = 0; i < M; ++i) acc[i] = _mm512_setzero_ps();
    one_tile_dots<0>(xq, kp, wb, 0, c[0]);
    int64_t g = 0;
    for (; g + 2 <= groups; g += 2) {
      one_tile_dots<1>(xq, kp, wb, g + 1, c[1]);
      one_tile_add<M>(acc, c[0], sw + g * kTile, sx + g, groups);
      if (g + 2 < groups) one_tile_dots<0>(xq, kp, wb, g + 2, c[0]);
      one_tile_add<M>(acc, c[1], sw + (g + 1) * kTile, sx + g + 1, groups);
    }
    if (g < groups) one_tile_add<M>(acc, c[0], sw + g * kTile, sx + g, groups);
    const int64_t c0 = b * kTile, cols = std::min<int64_t>(kTile, n1 - c0);
    const auto mask = static_cast<__mmask16>((1u << cols) - 1);
#pragma GCC unroll 16
    for (int i = 0; i < M; ++i) _mm512_mask_storeu_ps(y + i * w.n + c0, mask, acc[i]);
  }
  _tile_release();
}

using OneTileFn = void (*)(const detail::QuantX&, const WeightView&, float*, int64_t, int64_t);
template <int... M>
constexpr auto one_tile_table(std::integer_sequence<int, M...>) {
  return std::array<OneTileFn, sizeof...(M)>{columns_one_tile<M + 1>...};
}
constexpr auto kOneTile = one_tile_table(std::make_integer_sequence<int, kTile>{});

FLAMINGO_AMX void spin(int64_t iterations) {
  configure(kTile);
  _tile_zero(4);
  _tile_zero(5);
  _tile_zero(6);
  _tile_zero(7);
  for (int64_t i = 0; i < iterations; ++i) {
    _tile_dpbssd(0, 4, 6);
    _tile_dpbssd(1, 4, 7);
    _tile_dpbssd(2, 5, 6);
    _tile_dpbssd(3, 5, 7);
  }
  _tile_release();
}

}  // namespace

void amx_int8_spin(int64_t iterations) { spin(iterations); }

void amx_int8_columns(const detail::QuantX& qx, int64_t m, const WeightView& w, float* y,
                      int64_t n0, int64_t n1) {
  if (m <= kTile) {
    kOneTile[m - 1](qx, w, y, n0, n1);
  } else {
    columns(qx, m, w, y, n0, n1);
  }
}

}  // namespace flamingo::kernels
