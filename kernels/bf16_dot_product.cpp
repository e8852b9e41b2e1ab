#include "kernels/bf16_dot_product.h"

// GCC 12 warns about the undefined lanes its own AVX-512 intrinsics start from
// (_mm512_undefined_*): a false positive.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <utility>

#include "kernels/product_common.h"

namespace flamingo::kernels {
namespace {

#define FLAMINGO_BF16DOT __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

using detail::kAhead;
using detail::kKTile;
using detail::kLanes;
using detail::kMaxXBlock;
using detail::kMGroup;
using detail::kNoPrefetch;
using detail::kShare;
using detail::Prefetch;

constexpr int64_t kVecK = 2 * kLanes;  // K per vector: 16 lanes x a pair
constexpr int64_t kNB = 8;             // weight rows per block (3 x 8 sums + 3 x + 1 w = 28 zmm)
static_assert(kKTile % kVecK == 0);

// Micro kernel arguments: x rows at x (stride ldx), weight rows at w (stride ldw), `vecs`
// vectors of 32 K, lane sums at acc (row i, column j at acc[i * acc_ld + j * 16]).
struct Micro {
  const uint16_t* x;
  int64_t ldx;
  const uint16_t* w;
  int64_t ldw;
  int64_t vecs;
  float* acc;
  int64_t acc_ld;
  int64_t pf;  // bytes ahead of the weight rows to prefetch (0: none)
  bool fresh;  // the sums start at zero (the block's first K tile), not from acc
  // Bytes from w to the rows' end, and from a row's end to its successor in the next block
  // (detail::prefetch_target).
  int64_t pf_left = 0, pf_skip = 0;
  // Instead (pf 0): a share of the next block's weights (detail::prefetch_share_lines).
  detail::NextBlock::Share share = {};
};

template <int MB, int NB, Prefetch PF>
FLAMINGO_BF16DOT inline void block(const Micro& p) {
  const uint16_t* xr[MB];
  const uint16_t* wr[NB];
#pragma GCC unroll 8
  for (int i = 0; i < MB; ++i) xr[i] = p.x + i * p.ldx;
#pragma GCC unroll 8
  for (int j = 0; j < NB; ++j) wr[j] = p.w + j * p.ldw;
  __m512 c[MB][NB];
  if (p.fresh) {
#pragma GCC unroll 8
    for (int i = 0; i < MB; ++i) {
#pragma GCC unroll 8
      for (int j = 0; j < NB; ++j) c[i][j] = _mm512_setzero_ps();
    }
  } else {
    detail::load_sums(p.acc, p.acc_ld, c);
  }
  for (int64_t v = 0; v < p.vecs; ++v) {
    const int64_t k = v * kVecK;
    if constexpr (PF == kShare) detail::prefetch_share_lines(p.share, p.vecs, v);
    __m512bh xa[MB];
#pragma GCC unroll 8
    for (int i = 0; i < MB; ++i) xa[i] = (__m512bh)_mm512_loadu_si512(xr[i] + k);
#pragma GCC unroll 8
    for (int j = 0; j < NB; ++j) {
      if constexpr (PF == kAhead) {
        _mm_prefetch(detail::prefetch_target(reinterpret_cast<const char*>(wr[j] + k), p.pf,
                                             p.pf_left - k * 2, p.pf_skip),
                     _MM_HINT_T0);
      }
      __m512i wv = _mm512_loadu_si512(wr[j] + k);
      asm("" : "+v"(wv));  // one load per weight vector, not one per x row
#pragma GCC unroll 8
      for (int i = 0; i < MB; ++i) c[i][j] = _mm512_dpbf16_ps(c[i][j], xa[i], (__m512bh)wv);
    }
  }
  detail::store_sums(p.acc, p.acc_ld, c);
}

template <int MB, int NB>
FLAMINGO_BF16DOT void micro(const Micro& p) {
  if (p.pf != 0) {
    block<MB, NB, kAhead>(p);
  } else if (p.share.lines > 0) {
    block<MB, NB, kShare>(p);
  } else {
    block<MB, NB, kNoPrefetch>(p);
  }
}

using MicroFn = void (*)(const Micro&);

template <int MB, size_t... J>
constexpr std::array<MicroFn, kNB> micro_row(std::index_sequence<J...>) {
  return {micro<MB, static_cast<int>(J) + 1>...};
}

// kMicro[mb][width - 1]
constexpr std::array<std::array<MicroFn, kNB>, kMaxXBlock + 1> kMicro = {
    std::array<MicroFn, kNB>{}, micro_row<1>(std::make_index_sequence<kNB>()),
    micro_row<2>(std::make_index_sequence<kNB>()), micro_row<3>(std::make_index_sequence<kNB>())};

// Weight rows [n0, n1) on one thread (n0 a multiple of kNB): for each group of up to kMGroup
// x rows, each block of kNB weight rows and each K tile, every register block of up to 3 x rows
// meets the block's weights; the first streams them from memory (and prefetches), the others
// find them in L1, or with several x blocks, each prefetches its share of the next block
// (detail::NextBlock). The K % 32 tail runs as one more vector over zero-padded copies.
void columns(const uint16_t* x, int64_t m, const WeightView& w, float* y, int64_t n0, int64_t n1) {
  const auto* wdata = static_cast<const uint16_t*>(w.data);
  const int64_t kv = w.k / kVecK * kVecK, tail = w.k - kv;
  constexpr int64_t acc_ld = kNB * kLanes;
  alignas(64) float acc[kMGroup * acc_ld];
  alignas(64) uint16_t xtail[kMGroup * kVecK];
  alignas(64) uint16_t wtail[kNB * kVecK];
  const int64_t pf = detail::prefetch_bytes();
  for (int64_t m0 = 0; m0 < m; m0 += kMGroup) {
    const int64_t mc = std::min(kMGroup, m - m0);
    const uint16_t* xg = x + m0 * w.k;
    const detail::XBlocks xb(mc, kMaxXBlock);
    const int64_t xblocks = xb.count;
    if (tail > 0) {
      std::memset(xtail, 0, sizeof xtail);
      for (int64_t i = 0; i < mc; ++i) {
        std::memcpy(xtail + i * kVecK, xg + i * w.k + kv, tail * sizeof(uint16_t));
      }
    }
    for (int64_t n = n0; n < n1; n += kNB) {
      const int64_t nb = std::min(kNB, n1 - n);
      const int64_t next_rows = std::min(kNB, n1 - n - kNB);  // none past the range
      const detail::NextBlock next(next_rows > 0 ? wdata + (n + kNB) * w.k : nullptr,
                                   next_rows * w.k * 2);
      // The first sweep starts the sums at zero; the others go on from acc.
      auto sweep = [&](const uint16_t* xp, int64_t ldx, const uint16_t* wp, int64_t ldw,
                       int64_t vecs, bool stream, bool fresh, int64_t k0) {
        const int64_t k1 = std::min(kv, k0 + kKTile);
        const bool shared =
            stream && pf != 0 && xblocks > 1 && next.fits(k0, k1, kv, vecs, xblocks);
        auto shares = shared ? next.shares(k0, k1, kv, xblocks) : detail::NextBlock::Shares{};
        for (int64_t b = 0, i = 0; b < xblocks; ++b) {
          const int64_t mb = xb.rows[b];
          Micro p{xp + i * ldx,
                  ldx,
                  wp,
                  ldw,
                  vecs,
                  acc + i * acc_ld,
                  acc_ld,
                  b == 0 && stream && !shared ? pf : 0,  // the block that streams
                  fresh,
                  (w.k - k0) * 2,
                  (kNB - 1) * w.k * 2};
          if (shared) p.share = shares.next();
          kMicro[mb][nb - 1](p);
          i += mb;
        }
      };
      for (int64_t k0 = 0; k0 < kv; k0 += kKTile) {
        sweep(xg + k0, w.k, wdata + n * w.k + k0, w.k, std::min(kKTile, kv - k0) / kVecK, true,
              k0 == 0, k0);
      }
      if (tail > 0) {
        std::memset(wtail, 0, sizeof wtail);
        for (int64_t j = 0; j < nb; ++j) {
          std::memcpy(wtail + j * kVecK, wdata + (n + j) * w.k + kv, tail * sizeof(uint16_t));
        }
        sweep(xtail, kVecK, wtail, kVecK, 1, false, kv == 0, 0);
      }
      for (int64_t i = 0; i < mc; ++i) {
        float* yrow = y + (m0 + i) * w.n + n;
        if (nb == kNB) {
          detail::reduce16x8(acc + i * acc_ld, yrow);
        } else {
          for (int64_t j = 0; j < nb; ++j)
            yrow[j] = detail::reduce16(acc + i * acc_ld + j * kLanes);
        }
      }
    }
  }
}

}  // namespace

void bf16_dot_product(const uint16_t* x, int64_t m, const WeightView& w, float* y) {
  if (m <= 0 || w.n <= 0) return;
  if (w.k == 0) {
    std::fill(y, y + m * w.n, 0.f);
    return;
  }
  detail::for_column_ranges(m, w.n, w.k, kNB,
                            [=, &w](int64_t n0, int64_t n1) { columns(x, m, w, y, n0, n1); });
}

FLAMINGO_BF16DOT float bf16_dot_spin(int64_t iterations) {
  __m512 c[kBf16DotSpinOps];
  for (int64_t i = 0; i < kBf16DotSpinOps; ++i) c[i] = _mm512_set1_ps(static_cast<float>(i));
  __m512i a = _mm512_set1_epi16(0x3f80);  // bfloat16 1.0
  __m512i b = _mm512_set1_epi16(0x3c00);  // bfloat16 2^-7
  asm("" : "+v"(a), "+v"(b));
  for (int64_t it = 0; it < iterations; ++it) {
#pragma GCC unroll 16
    for (int64_t i = 0; i < kBf16DotSpinOps; ++i) {
      c[i] = _mm512_dpbf16_ps(c[i], (__m512bh)a, (__m512bh)b);
    }
  }
  __m512 s = c[0];
  for (int64_t i = 1; i < kBf16DotSpinOps; ++i) s = _mm512_add_ps(s, c[i]);
  return _mm512_reduce_add_ps(s);
}

}  // namespace flamingo::kernels
