#include "kernels/amx_product.h"

// GCC 12 warns about the undefined lanes its own AVX-512 intrinsics start from
// (_mm512_undefined_*): a false positive.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/amx_tiles.h"
#include "kernels/product_common.h"
#include "kernels/transpose16.h"

namespace flamingo::kernels {
namespace {

#define FLAMINGO_AMX __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw")))

constexpr int64_t kTile = 16;        // weight rows per A tile, K pairs per tile, tokens per B tile
constexpr int64_t kChunk = 32;       // K per tile: 16 pairs of bfloat16 = 64 bytes per row
constexpr int64_t kBlockCols = 32;   // output columns per block: two A tiles
constexpr int64_t kGroupBlocks = 4;  // token blocks per pass over a task's weights (64 tokens)
constexpr int64_t kPrefetch = 512;   // bytes ahead of each weight row (measured: 0-4096)

// Tiles 0-3: sums of A tile a and B tile b in tile a + 2 b (16 columns x width tokens); 4-5:
// weights A[a] (16 rows x 32 K); 6-7: x B[b] (16 pairs x width tokens).
FLAMINGO_AMX void configure(int64_t width) {
  detail::TileConfig c;
  for (int t = 0; t < 8; ++t) c.rows[t] = kTile;
  for (int t : {0, 1, 2, 3, 6, 7}) c.colsb[t] = static_cast<uint16_t>(4 * width);
  c.colsb[4] = c.colsb[5] = kChunk * 2;
  detail::load_tile_config(c);
}

// One pass of NA weight tiles against NB token tiles over all of K.
struct TilePass {
  const char* a[2];     // first weight row of each A tile (16 rows at stride lda)
  int64_t lda;          // bytes
  int64_t chunks;       // whole chunks of 32 K read through a
  const char* tail[2];  // the K % 32 tail of each A tile, zero-padded (16 x 64 bytes), or null
  const char* b[2];     // packed x of each token tile: chunk c at b + c * bchunk
  int64_t bchunk, ldb;  // bytes
  float* c[2][2];       // sums out: [a][b], 16 rows (columns of y) x width floats
  int64_t ldc;          // bytes
  bool prefetch;
};

template <int NA, int NB>
FLAMINGO_AMX void pass(const TilePass& p) {
  _tile_zero(0);
  if constexpr (NA > 1) _tile_zero(1);
  if constexpr (NB > 1) _tile_zero(2);
  if constexpr (NA > 1 && NB > 1) _tile_zero(3);
  auto step = [&](const char* a0, const char* a1, int64_t lda, int64_t c) {
    _tile_loadd(4, a0, lda);
    if constexpr (NA > 1) _tile_loadd(5, a1, lda);
    _tile_loadd(6, p.b[0] + c * p.bchunk, p.ldb);
    if constexpr (NB > 1) _tile_loadd(7, p.b[1] + c * p.bchunk, p.ldb);
    _tile_dpbf16ps(0, 4, 6);
    if constexpr (NA > 1) _tile_dpbf16ps(1, 5, 6);
    if constexpr (NB > 1) _tile_dpbf16ps(2, 4, 7);
    if constexpr (NA > 1 && NB > 1) _tile_dpbf16ps(3, 5, 7);
  };
  for (int64_t c = 0; c < p.chunks; ++c) {
    const int64_t off = c * kChunk * 2;
    if (p.prefetch) {
      for (int a = 0; a < NA; ++a) {
        for (int64_t r = 0; r < kTile; ++r) {
          _mm_prefetch(detail::prefetch_target(p.a[a] + r * p.lda + off, kPrefetch, p.lda - off,
                                               (NA * kTile - 1) * p.lda),
                       _MM_HINT_T0);
        }
      }
    }
    step(p.a[0] + off, p.a[NA - 1] + off, p.lda, c);
  }
  if (p.tail[0] != nullptr) step(p.tail[0], p.tail[NA - 1], kChunk * 2, p.chunks);
  _tile_stored(0, p.c[0][0], p.ldc);
  if constexpr (NA > 1) _tile_stored(1, p.c[1][0], p.ldc);
  if constexpr (NB > 1) _tile_stored(2, p.c[0][1], p.ldc);
  if constexpr (NA > 1 && NB > 1) _tile_stored(3, p.c[1][1], p.ldc);
}

using PassFn = void (*)(const TilePass&);
constexpr PassFn kPass[2][2] = {{pass<1, 1>, pass<1, 2>}, {pass<2, 1>, pass<2, 2>}};

// x in the B layout: token tile t holds pairs r = 0 .. kp / 2 - 1 of `width` tokens, the pair
// (x[k = 2r], x[2r + 1]) of token i as one 32-bit word at [t][r][i]; zeros pad K to kp and
// the last tile's missing tokens.
struct PackedX {
  std::vector<uint32_t> words;
  int64_t width = 0, tiles = 0, pairs = 0;
  const char* tile(int64_t t) const {
    return reinterpret_cast<const char*>(words.data() + t * pairs * width);
  }
};

void pack_x(const uint16_t* x, int64_t m, int64_t k, PackedX& out) {
  out.width = std::min(m, kTile);
  out.tiles = (m + out.width - 1) / out.width;
  out.pairs = (k + kChunk - 1) / kChunk * kChunk / 2;
  out.words.assign(out.tiles * out.pairs * out.width, 0u);
  int64_t i0 = 0;
  if (out.width == kTile && k % 2 == 0) {  // whole tiles: 16 x 16 blocks of K pairs, transposed
    const int64_t blocks = k / 2 / kTile;
    for (; i0 + kTile <= m; i0 += kTile) {
      uint32_t* tile = out.words.data() + (i0 / kTile) * out.pairs * kTile;
      for (int64_t b = 0; b < blocks; ++b) {
        detail::transpose16(x + i0 * k + b * kTile * 2, k / 2, tile + b * kTile * kTile, kTile);
      }
      for (int64_t i = i0; i < i0 + kTile; ++i) {
        const uint16_t* row = x + i * k;
        for (int64_t r = blocks * kTile; r < k / 2; ++r) {
          tile[r * kTile + i - i0] = uint32_t{row[2 * r]} | uint32_t{row[2 * r + 1]} << 16;
        }
      }
    }
  }
  for (int64_t i = i0; i < m; ++i) {
    const uint16_t* row = x + i * k;
    uint32_t* dst = out.words.data() + (i / out.width) * out.pairs * out.width + i % out.width;
    for (int64_t r = 0; r < k / 2; ++r) {
      dst[r * out.width] = uint32_t{row[2 * r]} | uint32_t{row[2 * r + 1]} << 16;
    }
    if (k % 2 != 0) dst[(k / 2) * out.width] = row[k - 1];
  }
}

// Per-thread scratch: weight rows past the last whole tile (zero rows below them), the K tails
// of both A tiles, the sums of the four C tiles.
struct Scratch {
  std::vector<uint16_t> rows;
  alignas(64) uint16_t tail[2][kTile * kChunk];
  alignas(64) float sums[2][2][kTile * kTile];
};

// Output columns [n0, n1) (n0 a multiple of 32) of y for all tokens, on this thread.
FLAMINGO_AMX void columns(const PackedX& px, int64_t m, const WeightView& w, float* y, int64_t n0,
                          int64_t n1) {
  thread_local Scratch s;
  const int64_t k = w.k, whole = k / kChunk, rest = k % kChunk;
  const auto* wdata = static_cast<const uint16_t*>(w.data);
  configure(px.width);
  for (int64_t g0 = 0; g0 < px.tiles; g0 += kGroupBlocks) {
    const int64_t g1 = std::min(px.tiles, g0 + kGroupBlocks);
    for (int64_t n = n0; n < n1; n += kBlockCols) {
      TilePass p{};
      int64_t rows[2] = {std::min(kTile, n1 - n),
                         std::max<int64_t>(0, std::min(kTile, n1 - n - kTile))};
      const int na = rows[1] > 0 ? 2 : 1;
      for (int a = 0; a < na; ++a) {
        const uint16_t* src = wdata + (n + a * kTile) * k;
        if (rows[a] < kTile) {  // the product's last columns: copy, zero rows below
          s.rows.assign(kTile * k, 0);
          std::memcpy(s.rows.data(), src, sizeof(uint16_t) * rows[a] * k);
          src = s.rows.data();
        }
        p.a[a] = reinterpret_cast<const char*>(src);
        if (rest > 0) {
          std::memset(s.tail[a], 0, sizeof s.tail[a]);
          for (int64_t r = 0; r < kTile; ++r) {
            std::memcpy(s.tail[a] + r * kChunk, src + r * k + whole * kChunk,
                        sizeof(uint16_t) * rest);
          }
          p.tail[a] = reinterpret_cast<const char*>(s.tail[a]);
        }
      }
      p.lda = k * 2;
      p.chunks = whole;
      p.bchunk = kTile * px.width * 4;
      p.ldb = px.width * 4;
      p.ldc = px.width * 4;
      for (int a = 0; a < 2; ++a) {
        for (int b = 0; b < 2; ++b) p.c[a][b] = s.sums[a][b];
      }
      for (int64_t t = g0; t < g1; t += 2) {
        const int nb = t + 1 < g1 ? 2 : 1;
        p.b[0] = px.tile(t);
        p.b[1] = px.tile(t + nb - 1);
        p.prefetch = t == g0;  // the first pass streams the weights; the others find them cached
        kPass[na - 1][nb - 1](p);
        for (int b = 0; b < nb; ++b) {
          const int64_t i0 = (t + b) * px.width, tokens = std::min(px.width, m - i0);
          for (int a = 0; a < na; ++a) {
            const float* c = s.sums[a][b];
            if (tokens == kTile && rows[a] == kTile && px.width == kTile) {
              detail::transpose16(c, kTile, y + i0 * w.n + n + a * kTile, w.n);
              continue;
            }
            for (int64_t i = 0; i < tokens; ++i) {
              float* yrow = y + (i0 + i) * w.n + n + a * kTile;
              for (int64_t r = 0; r < rows[a]; ++r) yrow[r] = c[r * px.width + i];
            }
          }
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
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 5, 6);
    _tile_dpbf16ps(2, 4, 7);
    _tile_dpbf16ps(3, 5, 7);
  }
  _tile_release();
}

}  // namespace

void amx_bf16_spin(int64_t iterations) { spin(iterations); }

void amx_bf16_product(const uint16_t* x, int64_t m, const WeightView& w, float* y) {
  if (m <= 0 || w.n <= 0) return;
  if (w.k == 0) {
    std::fill(y, y + m * w.n, 0.f);
    return;
  }
  // Reused by this thread's products; the pool's workers read it through this pointer.
  thread_local PackedX packed;
  pack_x(x, m, w.k, packed);
  const PackedX* px = &packed;
  detail::for_column_ranges(m, w.n, w.k, kBlockCols,
                            [=, &w](int64_t n0, int64_t n1) { columns(*px, m, w, y, n0, n1); });
}

}  // namespace flamingo::kernels
