#include "kernels/amx_int8.h"

// GCC 12 warns about the undefined lanes its own AVX-512 intrinsics start from
// (_mm512_undefined_*): a false positive.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <cstring>

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

FLAMINGO_AMX void columns(const detail::QuantX& qx, int64_t m, const WeightView& w, float* y,
                          int64_t n0, int64_t n1) {
  const int64_t groups = qx.groups, kp = qx.kp;
  const int64_t width = std::min(m, kTile), tiles = (m + width - 1) / width;
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
  columns(qx, m, w, y, n0, n1);
}

}  // namespace flamingo::kernels
