// Internal to the weight products: the float32 / bfloat16 products' shape (16 lane sums per
// output element and their fixed reduction tree, K tiles, x row groups), and for every product
// (kernels/weight_product, int8_product, amx_product) the split into tasks over output columns
// and the prefetch distance. Torch-free.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "kernels/thread_pool.h"

namespace flamingo::kernels::detail {

constexpr int64_t kLanes = 16;   // lane sums per output element, on every path
constexpr int64_t kKTile = 512;  // K per tile: a block's tile rows stay in L1
constexpr int64_t kMGroup = 48;  // x rows per pass over the weights (they stay in L2)
constexpr int64_t kMaxXBlock = 3;

// A group of up to kMGroup x rows in register blocks of at most `most` rows, as few as
// possible, their sizes differing by at most one (the first mc % count are one row larger):
// worked out once per group rather than with two divisions per block and tile.
struct XBlocks {
  int64_t count = 0;
  int64_t rows[kMGroup] = {};
  XBlocks(int64_t mc, int64_t most) : count((mc + most - 1) / most) {
    for (int64_t b = 0; b < count; ++b) rows[b] = mc / count + (b < mc % count ? 1 : 0);
  }
};

// The fixed reduction of 16 lane sums: (l + l+8), then (+4), then ((0+2) + (1+3)). The vector
// paths take the same order (high half onto low half, three times, then lane 1 onto lane 0).
inline float reduce16(const float* l) {
  float s[8], t[4];
  for (int i = 0; i < 8; ++i) s[i] = l[i] + l[i + 8];
  for (int i = 0; i < 4; ++i) t[i] = s[i] + s[i + 4];
  return (t[0] + t[2]) + (t[1] + t[3]);
}

// GCC 12 warns about the undefined lanes its _mm512_shuffle_f32x4 starts from: a false positive.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// reduce16 of 8 columns' lane sums at once (column j's at sums + 16 j, 64-byte aligned) into
// out[0..7]: the same adds in the same tree, so the same bits.
__attribute__((target("avx512f"))) inline void reduce16x8(const float* sums, float* out) {
  __m512 v[8];
  for (int j = 0; j < 8; ++j) v[j] = _mm512_load_ps(sums + j * kLanes);
  __m512 p[4];  // [s_2i | s_2i+1], s[i] = l[i] + l[i + 8]
  for (int i = 0; i < 4; ++i) {
    p[i] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0x44),
                         _mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0xEE));
  }
  __m512 q[2];  // [t_4i | t_4i+1 | t_4i+2 | t_4i+3], t[i] = s[i] + s[i + 4]
  for (int i = 0; i < 2; ++i) {
    q[i] = _mm512_add_ps(_mm512_shuffle_f32x4(p[2 * i], p[2 * i + 1], 0x88),
                         _mm512_shuffle_f32x4(p[2 * i], p[2 * i + 1], 0xDD));
  }
  // Lane block b: [t0 + t2, t1 + t3] of column b, then of column b + 4.
  const __m512 u =
      _mm512_add_ps(_mm512_shuffle_ps(q[0], q[1], 0x44), _mm512_shuffle_ps(q[0], q[1], 0xEE));
  // Lane block b: [column b, column b + 4, (again)].
  const __m512 r = _mm512_add_ps(_mm512_shuffle_ps(u, u, 0x88), _mm512_shuffle_ps(u, u, 0xDD));
  const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 0, 0, 0, 0, 0, 0, 0, 0);
  _mm256_storeu_ps(out, _mm512_castps512_ps256(_mm512_permutexvar_ps(order, r)));
}
#pragma GCC diagnostic pop

// reduce16 of 4 columns' lane sums at once (column j's at sums + 16 j) into out[0..3] with AVX:
// s = l[0..7] + l[8..15], t = s[0..3] + s[4..7], then (t0 + t2) + (t1 + t3) after a 4 x 4
// transpose: the same adds in the same tree, so the same bits.
__attribute__((target("avx"))) inline void reduce16x4(const float* sums, float* out) {
  __m128 t[4];
  for (int j = 0; j < 4; ++j) {
    const __m256 s =
        _mm256_add_ps(_mm256_loadu_ps(sums + j * kLanes), _mm256_loadu_ps(sums + j * kLanes + 8));
    t[j] = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
  }
  // Columns 0, 1 (e) and 2, 3 (f): [t_j[0] + t_j[2], t_j+1[0] + t_j+1[2], t_j[1] + t_j[3], ...].
  const __m128 e = _mm_add_ps(_mm_unpacklo_ps(t[0], t[1]), _mm_unpackhi_ps(t[0], t[1]));
  const __m128 f = _mm_add_ps(_mm_unpacklo_ps(t[2], t[3]), _mm_unpackhi_ps(t[2], t[3]));
  _mm_storeu_ps(out, _mm_add_ps(_mm_movelh_ps(e, f), _mm_movehl_ps(f, e)));
}

// How far ahead of the weight rows the streaming route prefetches (bytes; 0: off).
// FLAMINGO_KERNEL_PREFETCH overrides the default 2048 (for tuning on a new machine).
int64_t prefetch_bytes();

// Runs fn(n0, n1) over output columns [0, n) in contiguous ranges whose starts are multiples
// of `unit`, on the kernel pool: several ranges per thread, so that a thread slowed by another
// process costs its share only; one range on the calling thread when m x n x k is too small to
// pay for a wake-up.
template <class Fn>
void for_column_ranges(int64_t m, int64_t n, int64_t k, int64_t unit, const Fn& fn) {
  const int64_t blocks = (n + unit - 1) / unit;
  ThreadPool& pool = kernel_pool();
  const int64_t work = m * n * k;
  // Few rows (bound by memory): two ranges per thread, each read as one long stream (8 gave
  // 5-15% less bandwidth at K = 1024, 1-32 rows, docs/PERFORMANCE.md); many rows: 8 per thread
  // for balance.
  const int64_t per_thread = m <= 64 ? 2 : 8;
  int64_t tasks =
      work < (int64_t{1} << 18) ? 1 : std::min<int64_t>(blocks, pool.threads() * per_thread);
  tasks = std::max<int64_t>(tasks, 1);
  auto run_range = [&](int64_t t) {
    const int64_t b0 = blocks * t / tasks, b1 = blocks * (t + 1) / tasks;
    const int64_t n0 = b0 * unit, n1 = std::min(n, b1 * unit);
    if (n0 < n1) fn(n0, n1);
  };
  if (tasks == 1) {
    run_range(0);
  } else {
    pool.run(tasks, run_range);
  }
}

// Where to prefetch `pf` bytes ahead of `at` in a weight row whose block of consecutive rows is
// read together, `left` bytes from `at` to the row's end: in the row while it lasts, then `skip`
// = (block rows - 1) x row bytes further: the same place in the same row of the next block,
// which follows in memory and is read next. Running on into the row's successor in the same
// block (being read already) would leave each block's first pf bytes per row to demand misses:
// with 2 KB ahead, the whole of a bfloat16 row of K = 1024.
inline const char* prefetch_target(const char* at, int64_t pf, int64_t left, int64_t skip) {
  return at + pf + (pf >= left ? skip : 0);
}

// Prefetch shares of the block of weight rows a thread reads next (contiguous: `bytes` from
// `next`; null: none). With several x blocks per K tile, the first x block used to stream the
// tile from memory (prefetching ahead in its rows) while the others computed from cache with no
// memory traffic at all: the stream and the arithmetic took turns (16 rows on the AVX2 path:
// 75% of the in-cache speed). Instead every register block of a tile prefetches its share of
// the next block into L2, a line or two per vector step of its loop: the next block arrives
// while this one is computed. Tile t of T takes the next block's lines [lines t / T,
// lines (t+1) / T).
struct NextBlock {
  const char* next = nullptr;
  int64_t lines = 0;

  NextBlock(const void* at, int64_t bytes)
      : next(static_cast<const char*>(at)), lines(at != nullptr ? (bytes + 63) / 64 : 0) {}

  // Tile [k0, k1) of kv: its lines.
  int64_t first(int64_t k0, int64_t kv) const { return lines * k0 / kv; }
  // Whether `calls` register blocks of `steps` vector steps each can take tile [k0, k1)'s
  // lines at kMaxPerStep lines per step.
  static constexpr int64_t kMaxPerStep = 2;
  bool fits(int64_t k0, int64_t k1, int64_t kv, int64_t steps, int64_t calls) const {
    return lines > 0 && first(k1, kv) - first(k0, kv) <= kMaxPerStep * steps * calls;
  }
  // A register block's share: its first line and how many.
  struct Share {
    const char* at = nullptr;
    int64_t lines = 0;
  };
  // The shares of a tile's n lines for its `calls` register blocks in turn: block c's are lines
  // [n c / calls, n (c + 1) / calls) (rounded down), counted on with no division per block (an
  // idiv per register block was 7% of a 16-row AVX2 product from cache).
  class Shares {
   public:
    Shares() = default;
    Shares(const char* at, int64_t n, int64_t calls)
        : at_(at), quot_(n / calls), rem_(n % calls), calls_(calls) {}
    Share next() {
      int64_t count = quot_;
      err_ += rem_;  // n c mod calls, before this block
      if (err_ >= calls_) {
        err_ -= calls_;
        ++count;
      }
      const Share s{at_, count};
      at_ += count * 64;
      return s;
    }

   private:
    const char* at_ = nullptr;
    int64_t quot_ = 0, rem_ = 0, calls_ = 1, err_ = 0;
  };
  // Tile [k0, k1) of kv shared by `calls` register blocks.
  Shares shares(int64_t k0, int64_t k1, int64_t kv, int64_t calls) const {
    const int64_t l0 = first(k0, kv);
    return Shares(next + l0 * 64, first(k1, kv) - l0, calls);
  }
};

// The lines of a share of `lines` (at most kMaxPerStep x steps) that a register block's step v
// of `steps` prefetches: v, then v + steps. Two tests per step, nothing else in the loop.
template <class Fn>
inline void for_share_lines(int64_t lines, int64_t steps, int64_t v, const Fn& fn) {
  static_assert(NextBlock::kMaxPerStep == 2);
  if (v < lines) fn(v);
  if (v + steps < lines) fn(v + steps);
}

// A register block's step v of `steps`: its share's lines for that step, if any, into L2.
inline void prefetch_share_lines(const NextBlock::Share& s, int64_t steps, int64_t v) {
  for_share_lines(s.lines, steps, v,
                  [at = s.at](int64_t l) { _mm_prefetch(at + l * 64, _MM_HINT_T1); });
}

// How a register block prefetches: not at all, ahead in its own weight rows (streaming them
// alone), or its share of the next block (NextBlock).
enum Prefetch { kNoPrefetch, kAhead, kShare };

// A register block's lane sums: row i, column j at acc[i * ld + j * 16] (64-byte aligned), as
// MB x NB zmm, or as [half][MB][NB] ymm (lanes 0-7, 8-15) on AVX2.
template <int MB, int NB>
__attribute__((target("avx512f"))) inline void load_sums(const float* acc, int64_t ld,
                                                         __m512 (&c)[MB][NB]) {
#pragma GCC unroll 8
  for (int i = 0; i < MB; ++i) {
#pragma GCC unroll 8
    for (int j = 0; j < NB; ++j) c[i][j] = _mm512_load_ps(acc + i * ld + j * kLanes);
  }
}
template <int MB, int NB>
__attribute__((target("avx512f"))) inline void store_sums(float* acc, int64_t ld,
                                                          const __m512 (&c)[MB][NB]) {
#pragma GCC unroll 8
  for (int i = 0; i < MB; ++i) {
#pragma GCC unroll 8
    for (int j = 0; j < NB; ++j) _mm512_store_ps(acc + i * ld + j * kLanes, c[i][j]);
  }
}
template <int MB, int NB>
__attribute__((target("avx2"))) inline void load_sums(const float* acc, int64_t ld,
                                                      __m256 (&c)[2][MB][NB]) {
#pragma GCC unroll 2
  for (int h = 0; h < 2; ++h) {
#pragma GCC unroll 8
    for (int i = 0; i < MB; ++i) {
#pragma GCC unroll 8
      for (int j = 0; j < NB; ++j) c[h][i][j] = _mm256_load_ps(acc + i * ld + j * kLanes + h * 8);
    }
  }
}
template <int MB, int NB>
__attribute__((target("avx2"))) inline void store_sums(float* acc, int64_t ld,
                                                       const __m256 (&c)[2][MB][NB]) {
#pragma GCC unroll 2
  for (int h = 0; h < 2; ++h) {
#pragma GCC unroll 8
    for (int i = 0; i < MB; ++i) {
#pragma GCC unroll 8
      for (int j = 0; j < NB; ++j) _mm256_store_ps(acc + i * ld + j * kLanes + h * 8, c[h][i][j]);
    }
  }
}

}  // namespace flamingo::kernels::detail
