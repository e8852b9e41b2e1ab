#include "kernels/weight_product.h"

// GCC 12 warns about the undefined upper lanes that its own AVX-512 widening intrinsics start
// from (_mm512_undefined_*): a false positive.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <utility>
#include <vector>

#include "kernels/amx_product.h"
#include "kernels/bf16_dot_product.h"
#include "kernels/int8_product.h"
#include "kernels/product_common.h"

namespace flamingo::kernels {
namespace detail {

int64_t prefetch_bytes() {
  static const int64_t b = [] {
    const char* e = std::getenv("FLAMINGO_KERNEL_PREFETCH");
    return e != nullptr ? std::atoll(e) : int64_t{2048};
  }();
  return b;
}

}  // namespace detail

namespace {

using detail::kAhead;
using detail::kKTile;
using detail::kLanes;
using detail::kMaxXBlock;
using detail::kMGroup;
using detail::kNoPrefetch;
using detail::kShare;
using detail::Prefetch;
using detail::prefetch_bytes;
using detail::reduce16;

inline float bf16_to_float(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// The exact float32 value the product uses for w[n][k] (float32 or bfloat16 weights).
inline float weight_value(const WeightView& w, int64_t n, int64_t k) {
  return w.type == WeightType::kFloat32
             ? static_cast<const float*>(w.data)[n * w.k + k]
             : bf16_to_float(static_cast<const uint16_t*>(w.data)[n * w.k + k]);
}

struct Args {
  const float* x;
  int64_t m;
  WeightView w;
  float* y;
  // The AVX2 path with bfloat16 weights: x rows [xp_row0, m) (the last group of x rows, the
  // only one that can widen weights in registers) as [m - xp_row0, k / 16 * 16] with K 4-7 and
  // 8-11 of every 16 swapped (permute_x_avx2), read by those micro kernels.
  const float* xp = nullptr;
  int64_t xp_row0 = 0;
};

// --- portable path ----------------------------------------------------------------------------

void rows_scalar(const Args& a, int64_t n0, int64_t n1) {
  const int64_t kp = (a.w.k + kLanes - 1) / kLanes * kLanes;
  for (int64_t n = n0; n < n1; ++n) {
    for (int64_t m = 0; m < a.m; ++m) {
      const float* x = a.x + m * a.w.k;
      float lane[kLanes] = {};
      for (int64_t k = 0; k < kp; ++k) {
        const bool in = k < a.w.k;
        lane[k % kLanes] =
            std::fma(in ? x[k] : 0.f, in ? weight_value(a.w, n, k) : 0.f, lane[k % kLanes]);
      }
      a.y[m * a.w.n + n] = reduce16(lane);
    }
  }
}

// --- blocked vector paths -----------------------------------------------------------------------
//
// For each group of up to kMGroup x rows, each block of kNB weight rows and each K tile, every
// register block of up to 3 x rows (AVX2: 2) meets the block's weights. The lane sums live in acc
// between tiles. With few x blocks the weights are converted in registers as they stream (decode:
// bound by memory); with many, each tile of bfloat16 / int8 weights is first widened into a float32
// scratch tile that all x blocks then read (prefill: bound by arithmetic). Either way each
// multiply-add sees the same float32 weight value, so the bits do not depend on the route.
// The K % 16 tail runs as one more vector over zero-padded copies.

#define FLAMINGO_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,fma")))
#define FLAMINGO_AVX2 __attribute__((target("avx2,fma")))

// Block shapes: kNB weight rows per block; x rows in register blocks of at most kXBlock; a
// micro kernel for mb x rows covers width[mb] of the block's rows.
struct Avx512Shape {
  static constexpr int64_t kNB = 8;
  static constexpr int64_t kXBlock = 3;
  static constexpr int64_t kWidth[kMaxXBlock + 1] = {0, 8, 8, 8};  // 3 x 8 sums + 4 = 28 zmm
};
struct Avx2Shape {
  static constexpr int64_t kNB = 6;
  // Each sum is two ymm (lanes 0-7, 8-15), 16 ymm in all: 1 x 6 -> 12 sums + 1 x + 1 w; 2 x 3
  // -> 12 sums + 2 x + 1 w, i.e. 5 loads per 6 FMAs with x and w in registers (3 x 2 needs 17
  // registers: the compiler took x from memory, 8 loads per 6 FMAs).
  static constexpr int64_t kXBlock = 2;
  static constexpr int64_t kWidth[kMaxXBlock + 1] = {0, 6, 3, 0};
};

// Micro kernel arguments: x rows at x (stride ldx), weight rows at w (stride ldw elements of the
// weight type), `vecs` vectors of 16 along K, lane sums at acc (row i, column j at
// acc[i * acc_ld + j * 16]).
struct Micro {
  const float* x;
  int64_t ldx;
  const void* w;
  int64_t ldw;
  int64_t vecs;
  float* acc;
  int64_t acc_ld;
  int64_t pf = 0;  // bytes ahead of the weight rows to prefetch (0: none)
  // Bytes from w to the rows' end, and from a row's end to its successor in the next block
  // (detail::prefetch_target).
  int64_t pf_left = 0, pf_skip = 0;
  // Instead (pf 0): a share of the next block's weights (detail::prefetch_share_lines).
  detail::NextBlock::Share share = {};
};

template <WeightType WT>
constexpr int64_t kWSize = WT == WeightType::kFloat32 ? 4 : 2;  // float32 or bfloat16

template <WeightType WT>
FLAMINGO_AVX512 inline __m512 load_w512(const void* w, int64_t off) {
  if constexpr (WT == WeightType::kFloat32) {
    return _mm512_loadu_ps(static_cast<const float*>(w) + off);
  } else {
    const __m256i h =
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(w) + off));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
}

// The register block: lane sums c[i][j] of x row i and weight row j over p.vecs vectors, the
// row pointers held in registers; PF: kAhead prefetches each weight row p.pf bytes ahead,
// kShare the block's share of the next block (detail::Prefetch).
template <int MB, int NB, WeightType WT, Prefetch PF>
FLAMINGO_AVX512 inline void block512(const Micro& p) {
  float* const acc = p.acc;
  const int64_t acc_ld = p.acc_ld, vecs = p.vecs, pf = p.pf;
  const float* xr[MB];
  const char* wr[NB];
#pragma GCC unroll 8
  for (int i = 0; i < MB; ++i) xr[i] = p.x + i * p.ldx;
#pragma GCC unroll 8
  for (int j = 0; j < NB; ++j) wr[j] = static_cast<const char*>(p.w) + j * p.ldw * kWSize<WT>;
  __m512 c[MB][NB];
  detail::load_sums(acc, acc_ld, c);
  for (int64_t v = 0; v < vecs; ++v) {
    const int64_t k = v * kLanes;
    if constexpr (PF == kShare) {
      detail::prefetch_share_lines(p.share, vecs, v);
    }
    __m512 xa[MB];
#pragma GCC unroll 8
    for (int i = 0; i < MB; ++i) xa[i] = _mm512_loadu_ps(xr[i] + k);
#pragma GCC unroll 8
    for (int j = 0; j < NB; ++j) {
      if constexpr (PF == kAhead) {
        _mm_prefetch(detail::prefetch_target(wr[j] + k * kWSize<WT>, pf, p.pf_left - k * kWSize<WT>,
                                             p.pf_skip),
                     _MM_HINT_T0);
      }
      __m512 wv = load_w512<WT>(wr[j], k);
      asm("" : "+v"(wv));  // one load per weight vector, not one per x row
#pragma GCC unroll 8
      for (int i = 0; i < MB; ++i) c[i][j] = _mm512_fmadd_ps(xa[i], wv, c[i][j]);
    }
  }
  detail::store_sums(acc, acc_ld, c);
}

template <int MB, int NB, WeightType WT>
FLAMINGO_AVX512 void micro512(const Micro& p) {
  if (p.pf != 0) {
    block512<MB, NB, WT, kAhead>(p);
  } else if (p.share.lines > 0) {
    block512<MB, NB, WT, kShare>(p);
  } else {
    block512<MB, NB, WT, kNoPrefetch>(p);
  }
}

template <WeightType WT>
FLAMINGO_AVX2 inline __m256 load_w256(const void* w, int64_t off) {
  if constexpr (WT == WeightType::kFloat32) {
    return _mm256_loadu_ps(static_cast<const float*>(w) + off);
  } else {
    const __m128i h =
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(w) + off));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
}

// bfloat16 weights in the AVX2 register block: half h of the 16 weights at w + off widened by
// interleaving with zeros within each 128-bit lane (one shuffle, no shift: the shift competes
// with the FMAs for ports 0 and 1 on Intel cores). Half 0 holds K 0-3 and 8-11 of the 16, half
// 1 K 4-7 and 12-15, so x is read permuted the same way (Args::xp) and the lane sums stay in
// that order in acc over all K tiles, swapped into their K order once per block of weight rows
// (unpermute_sums): each lane sums the same products in the same order as the other paths.
template <int H>
FLAMINGO_AVX2 inline __m256 load_bf16_half(const void* w, int64_t off) {
  const __m256i raw =
      _mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(w) + off));
  return _mm256_castsi256_ps(H == 0 ? _mm256_unpacklo_epi16(_mm256_setzero_si256(), raw)
                                    : _mm256_unpackhi_epi16(_mm256_setzero_si256(), raw));
}

// Lane sums in acc (rows [0, rows), columns [0, cols)) of K 0-3, 8-11 | 4-7, 12-15 -> K 0-7 |
// 8-15. Once per block: swapping in registers at every register block's load and store took 48
// shuffles per call (port 5, beside the unpacks).
void unpermute_sums(float* acc, int64_t acc_ld, int64_t rows, int64_t cols) {
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t j = 0; j < cols; ++j) {
      float* s = acc + i * acc_ld + j * kLanes;
      std::swap_ranges(s + 4, s + 8, s + 8);
    }
  }
}

// The AVX2 register block (as block512, each sum in two ymm); PF as there. bfloat16 weights:
// x and the sums permuted (load_bf16_half).
template <int MB, int NB, WeightType WT, Prefetch PF>
FLAMINGO_AVX2 inline void block256(const Micro& p) {
  float* const acc = p.acc;
  const int64_t acc_ld = p.acc_ld, vecs = p.vecs, pf = p.pf;
  const float* xr[MB];
  const char* wr[NB];
#pragma GCC unroll 8
  for (int i = 0; i < MB; ++i) xr[i] = p.x + i * p.ldx;
#pragma GCC unroll 8
  for (int j = 0; j < NB; ++j) wr[j] = static_cast<const char*>(p.w) + j * p.ldw * kWSize<WT>;
  __m256 c[2][MB][NB];  // [lanes 0-7 | 8-15]
  detail::load_sums(acc, acc_ld, c);
  for (int64_t v = 0; v < vecs; ++v) {
    if constexpr (PF == kShare) {
      detail::prefetch_share_lines(p.share, vecs, v);
    }
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {
      const int64_t k = v * kLanes + h * 8;
      __m256 xa[MB];
#pragma GCC unroll 8
      for (int i = 0; i < MB; ++i) {
        xa[i] = _mm256_loadu_ps(xr[i] + k);
        asm("" : "+x"(xa[i]));  // one load per x vector, not one per weight row
      }
#pragma GCC unroll 8
      for (int j = 0; j < NB; ++j) {
        if constexpr (PF == kAhead) {
          if (h == 0) {
            const int64_t at = v * kLanes * kWSize<WT>;
            _mm_prefetch(detail::prefetch_target(wr[j] + at, pf, p.pf_left - at, p.pf_skip),
                         _MM_HINT_T0);
          }
        }
        __m256 wv;
        if constexpr (WT == WeightType::kBFloat16) {
          wv = h == 0 ? load_bf16_half<0>(wr[j], v * kLanes) : load_bf16_half<1>(wr[j], v * kLanes);
        } else {
          wv = load_w256<WT>(wr[j], k);
        }
        asm("" : "+x"(wv));
#pragma GCC unroll 8
        for (int i = 0; i < MB; ++i) c[h][i][j] = _mm256_fmadd_ps(xa[i], wv, c[h][i][j]);
      }
    }
  }
  detail::store_sums(acc, acc_ld, c);
}

template <int MB, int NB, WeightType WT>
FLAMINGO_AVX2 void micro256(const Micro& p) {
  if (p.pf != 0) {
    block256<MB, NB, WT, kAhead>(p);
  } else if (p.share.lines > 0) {
    block256<MB, NB, WT, kShare>(p);
  } else {
    block256<MB, NB, WT, kNoPrefetch>(p);
  }
}

using MicroFn = void (*)(const Micro&);

// Widens rows [0, rows) x vecs vectors of a weight tile into float32 scratch (stride kKTile).
template <WeightType WT>
FLAMINGO_AVX512 void widen512(const Micro& p, int64_t rows, float* out) {
  for (int64_t j = 0; j < rows; ++j) {
    const char* row = static_cast<const char*>(p.w) + j * p.ldw * kWSize<WT>;
    for (int64_t v = 0; v < p.vecs; ++v) {
      const int64_t k = v * kLanes;
      if (p.pf != 0) _mm_prefetch(row + k * kWSize<WT> + p.pf, _MM_HINT_T0);
      _mm512_store_ps(out + j * kKTile + k, load_w512<WT>(p.w, j * p.ldw + k));
    }
  }
}

template <WeightType WT>
FLAMINGO_AVX2 void widen256(const Micro& p, int64_t rows, float* out) {
  for (int64_t j = 0; j < rows; ++j) {
    const char* row = static_cast<const char*>(p.w) + j * p.ldw * kWSize<WT>;
    for (int64_t k = 0; k < p.vecs * kLanes; k += 8) {
      if (p.pf != 0 && k % 16 == 0) _mm_prefetch(row + k * kWSize<WT> + p.pf, _MM_HINT_T0);
      _mm256_store_ps(out + j * kKTile + k, load_w256<WT>(p.w, j * p.ldw + k));
    }
  }
}

using WidenFn = void (*)(const Micro&, int64_t, float*);

// kMicro[weight type][mb][width - 1]
template <int MB, WeightType WT, size_t... J>
constexpr std::array<MicroFn, 8> micro512_row(std::index_sequence<J...>) {
  return {micro512<MB, static_cast<int>(J) + 1, WT>...};
}
template <int MB, WeightType WT, size_t... J>
constexpr std::array<MicroFn, 8> micro256_row(std::index_sequence<J...>) {
  return {micro256<MB, static_cast<int>(J) + 1, WT>...};
}

struct IsaKernels {
  int64_t nb, xblock;
  const int64_t* width;
  std::array<std::array<std::array<MicroFn, 8>, kMaxXBlock + 1>, 2> micro;  // float32, bfloat16
  WidenFn widen;                                                            // bfloat16 -> float32
};

template <WeightType WT>
constexpr std::array<std::array<MicroFn, 8>, kMaxXBlock + 1> micro512_table() {
  return {std::array<MicroFn, 8>{}, micro512_row<1, WT>(std::make_index_sequence<8>()),
          micro512_row<2, WT>(std::make_index_sequence<8>()),
          micro512_row<3, WT>(std::make_index_sequence<8>())};
}
template <WeightType WT>
constexpr std::array<std::array<MicroFn, 8>, kMaxXBlock + 1> micro256_table() {
  return {std::array<MicroFn, 8>{}, micro256_row<1, WT>(std::make_index_sequence<6>()),
          micro256_row<2, WT>(std::make_index_sequence<3>()), std::array<MicroFn, 8>{}};
}

const IsaKernels kAvx512Kernels{
    Avx512Shape::kNB,
    Avx512Shape::kXBlock,
    Avx512Shape::kWidth,
    {micro512_table<WeightType::kFloat32>(), micro512_table<WeightType::kBFloat16>()},
    widen512<WeightType::kBFloat16>};
const IsaKernels kAvx2Kernels{
    Avx2Shape::kNB,
    Avx2Shape::kXBlock,
    Avx2Shape::kWidth,
    {micro256_table<WeightType::kFloat32>(), micro256_table<WeightType::kBFloat16>()},
    widen256<WeightType::kBFloat16>};

// Whether a group of mc x rows first widens each bfloat16 weight tile to float32. Widening a
// tile once pays off only for many x blocks: converting in registers costs one or two vector
// ops per weight vector and x block, the widened route a store and a reload. Measured on
// AVX-512 (4096 x 4096) and with the AVX2 code on a Zen 5 (2048 x 1536, 3-16 rows): in
// registers is as fast or faster up to 16 rows.
bool widens(const IsaKernels& kern, WeightType type, int64_t mc) {
  constexpr int64_t kMaxFusedBlocks = 8;
  return type == WeightType::kBFloat16 && (mc + kern.xblock - 1) / kern.xblock > kMaxFusedBlocks;
}

// Args::xp: rows [row0, m) of x [m, k] -> [m - row0, k / 16 * 16] with K 4-7 and 8-11 of every
// 16 swapped.
void permute_x_avx2(const float* x, int64_t row0, int64_t m, int64_t k, std::vector<float>& out) {
  const int64_t kv = k / kLanes * kLanes;
  out.resize((m - row0) * kv);
  for (int64_t i = row0; i < m; ++i) {
    for (int64_t v = 0; v < kv; v += kLanes) {
      const float* s = x + i * k + v;
      float* d = out.data() + (i - row0) * kv + v;
      std::memcpy(d, s, 4 * sizeof(float));
      std::memcpy(d + 4, s + 8, 4 * sizeof(float));
      std::memcpy(d + 8, s + 4, 4 * sizeof(float));
      std::memcpy(d + 12, s + 12, 4 * sizeof(float));
    }
  }
}

// Weight rows [n0, n1) of a float32 / bfloat16 product on one thread (n0 a multiple of the
// block height).
void rows_blocked(const Args& a, const IsaKernels& kern, int64_t n0, int64_t n1) {
  const WeightView& w = a.w;
  const int64_t nbo = kern.nb;
  const int wt = static_cast<int>(w.type);
  const int64_t esize = weight_type_size(w.type);
  const int64_t kv = w.k / kLanes * kLanes, tail = w.k - kv;
  const int64_t acc_ld = nbo * kLanes;
  alignas(64) float acc[kMGroup * 8 * kLanes];
  alignas(64) float scratch[8 * kKTile];
  alignas(64) float xtail[kMGroup * kLanes];
  alignas(64) float wtail[8 * kLanes];
  const auto* wbytes = static_cast<const std::byte*>(w.data);
  for (int64_t m0 = 0; m0 < a.m; m0 += kMGroup) {
    const int64_t mc = std::min(kMGroup, a.m - m0);
    const float* xg = a.x + m0 * w.k;
    const detail::XBlocks xb(mc, kern.xblock);
    const int64_t xblocks = xb.count;
    const int64_t* xrows = xb.rows;  // x rows per x block
    // Register blocks per tile of a block of nb weight rows.
    auto register_blocks = [&](int64_t nb) {
      int64_t calls = 0;
      for (int64_t b = 0; b < xblocks; ++b) {
        calls += (nb + kern.width[xrows[b]] - 1) / kern.width[xrows[b]];
      }
      return calls;
    };
    const int64_t full_calls = register_blocks(nbo);
    const bool widen = widens(kern, w.type, mc);
    // The AVX2 bfloat16 register blocks: x and the sums permuted (load_bf16_half), K tiles of
    // 1024 (its 16-row products streamed 5-15% faster than with 512, on 4096 x 4096 8%; AVX2
    // float32 weights were slower and AVX-512 bfloat16 weights no faster: they keep 512).
    const bool permuted = !widen && &kern == &kAvx2Kernels && w.type == WeightType::kBFloat16;
    const int64_t ktile = permuted ? 2 * kKTile : kKTile;
    if (tail > 0) {
      for (int64_t i = 0; i < mc; ++i) {
        for (int64_t l = 0; l < kLanes; ++l)
          xtail[i * kLanes + l] = l < tail ? xg[i * w.k + kv + l] : 0.f;
      }
    }
    for (int64_t n = n0; n < n1; n += nbo) {
      const int64_t nb = std::min(nbo, n1 - n);
      std::memset(acc, 0, sizeof(float) * mc * acc_ld);
      // The next block's weights (none past the range: another thread's).
      const int64_t next_rows = std::min(nbo, n1 - n - nbo);
      const detail::NextBlock next(next_rows > 0 ? wbytes + (n + nbo) * w.k * esize : nullptr,
                                   next_rows * w.k * esize);
      // Runs every x block against the block's weights: fn(width kernel table, x, ldx, w...).
      // k0: the tile's first K (for the prefetch's wrap into the next block); `streams`: a
      // tile of the weights in memory (not the K % 16 tail). The first x block prefetches
      // ahead in the rows it streams (Micro::pf; the widened route: the widening), except with
      // several x blocks: the first streamed this tile while the others computed with no memory
      // traffic at all, the stream and the arithmetic taking turns. There every register block
      // prefetches its share of the next block's weights into L2 instead (detail::NextBlock),
      // when a share fits its pace and the weights are read once (one group of x rows: with
      // more, the product is bound by arithmetic and the shares' per-step test only costs, 3-10%
      // at 257 rows).
      const int64_t calls = nb == nbo ? full_calls : register_blocks(nb);
      auto shares_next = [&](int64_t vecs, int64_t k0) {
        return prefetch_bytes() != 0 && xblocks > 1 && a.m <= kMGroup &&
               next.fits(k0, std::min(kv, k0 + ktile), kv, vecs, calls);
      };
      auto sweep = [&](int table_wt, const float* x, int64_t ldx, const void* wp, int64_t ldw,
                       int64_t vecs, int64_t k0, bool streams) {
        const int64_t k1 = std::min(kv, k0 + ktile);
        const bool shared = streams && shares_next(vecs, k0);
        auto shares = shared ? next.shares(k0, k1, kv, calls) : detail::NextBlock::Shares{};
        for (int64_t b = 0, m = 0; b < xblocks; ++b) {
          const int64_t mb = xrows[b];
          for (int64_t j = 0; j < nb; j += kern.width[mb]) {
            const int64_t width = std::min(kern.width[mb], nb - j);
            Micro p{
                x + m * ldx,
                ldx,
                static_cast<const std::byte*>(wp) + j * ldw * (table_wt == wt ? esize : int64_t{4}),
                ldw,
                vecs,
                acc + m * acc_ld + j * kLanes,
                acc_ld,
                b == 0 && streams && !shared && table_wt == wt ? prefetch_bytes() : 0,
                (w.k - k0) * esize,
                (nbo - 1) * w.k * esize};
            if (shared) p.share = shares.next();
            kern.micro[table_wt][mb][width - 1](p);
          }
          m += mb;
        }
      };
      for (int64_t k0 = 0; k0 < kv; k0 += ktile) {
        const int64_t vecs = std::min(ktile, kv - k0) / kLanes;
        const void* wt_ptr = wbytes + (n * w.k + k0) * esize;
        if (widen) {
          const int64_t pf = shares_next(vecs, k0) ? 0 : prefetch_bytes();
          const Micro src{nullptr, 0, wt_ptr, w.k, vecs, nullptr, 0, pf};
          kern.widen(src, nb, scratch);
          sweep(0, xg + k0, w.k, scratch, kKTile, vecs, k0, true);
        } else if (permuted) {
          sweep(wt, a.xp + (m0 - a.xp_row0) * kv + k0, kv, wt_ptr, w.k, vecs, k0, true);
        } else {
          sweep(wt, xg + k0, w.k, wt_ptr, w.k, vecs, k0, true);
        }
      }
      if (permuted) unpermute_sums(acc, acc_ld, mc, nb);
      if (tail > 0) {
        for (int64_t j = 0; j < nb; ++j) {
          for (int64_t l = 0; l < kLanes; ++l) {
            wtail[j * kLanes + l] = l < tail ? weight_value(w, n + j, kv + l) : 0.f;
          }
        }
        sweep(0, xtail, kLanes, wtail, kLanes, 1, 0, false);
      }
      for (int64_t i = 0; i < mc; ++i) {
        float* yrow = a.y + (m0 + i) * w.n + n;
        if (nb == 8 && &kern == &kAvx512Kernels) {
          detail::reduce16x8(acc + i * acc_ld, yrow);
        } else if (nb >= 4) {  // AVX2: columns 0-3 and nb-4..nb-1 (any overlap: the same bits)
          detail::reduce16x4(acc + i * acc_ld, yrow);
          detail::reduce16x4(acc + i * acc_ld + (nb - 4) * kLanes, yrow + nb - 4);
        } else {
          for (int64_t j = 0; j < nb; ++j) yrow[j] = reduce16(acc + i * acc_ld + j * kLanes);
        }
      }
    }
  }
}

}  // namespace

void weight_product_raw(const float* x, int64_t m, const WeightView& w, float* y, Isa isa) {
  if (m <= 0 || w.n <= 0) return;
  if (w.k == 0) {
    std::fill(y, y + m * w.n, 0.f);
    return;
  }
  isa = std::min(isa, cpu_isa());
  if (w.type == WeightType::kInt8) {
    int8_product_raw(x, m, w, y, isa);
    return;
  }
  Args a{x, m, w, y};
  const IsaKernels* kern = isa >= Isa::kAvx512 ? &kAvx512Kernels
                           : isa == Isa::kAvx2 ? &kAvx2Kernels
                                               : nullptr;
  // Reused by this thread's products; the pool's workers read it through a.xp.
  thread_local std::vector<float> xp;
  const int64_t last0 = (m - 1) / kMGroup * kMGroup;
  if (kern == &kAvx2Kernels && w.type == WeightType::kBFloat16 &&
      !widens(*kern, w.type, m - last0) && w.k >= kLanes) {
    permute_x_avx2(x, last0, m, w.k, xp);
    a.xp = xp.data();
    a.xp_row0 = last0;
  }
  const int64_t unit = kern != nullptr ? kern->nb : 8;  // columns per indivisible block
  detail::for_column_ranges(m, w.n, w.k, unit, [&](int64_t n0, int64_t n1) {
    if (kern != nullptr) {
      rows_blocked(a, *kern, n0, n1);
    } else {
      rows_scalar(a, n0, n1);
    }
  });
}

at::Tensor weight_product(const at::Tensor& x, const PackedWeight& w, const at::Tensor& bias,
                          Isa isa) {
  TORCH_CHECK(w.defined(), "weight_product: undefined weight");
  TORCH_CHECK(x.dim() == 2, "weight_product: x must be [M, K], got ", x.sizes());
  TORCH_CHECK(x.size(1) == w.cols(), "weight_product: x has K = ", x.size(1),
              " but the weight has K = ", w.cols());
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16,
              "weight_product: x must be float32 or bfloat16, got ", x.scalar_type());
  TORCH_CHECK(x.device().is_cpu(), "weight_product: CPU kernel got a ", x.device(), " tensor");
  at::Tensor y = at::empty({x.size(0), w.rows()}, x.options().dtype(at::kFloat));
  isa = std::min(isa, cpu_isa());
  if (isa >= Isa::kAvx512Bf16 && w.type() == WeightType::kBFloat16 &&
      x.scalar_type() == at::kBFloat16) {
    const at::Tensor xc = x.contiguous();
    const auto* xb = reinterpret_cast<const uint16_t*>(xc.data_ptr());
    if (isa >= Isa::kAmx) {
      amx_bf16_product(xb, xc.size(0), w.view(), y.data_ptr<float>());
    } else {
      bf16_dot_product(xb, xc.size(0), w.view(), y.data_ptr<float>());
    }
  } else {
    const at::Tensor xf = x.to(at::kFloat).contiguous();
    weight_product_raw(xf.data_ptr<float>(), xf.size(0), w.view(), y.data_ptr<float>(), isa);
  }
  if (bias.defined()) {
    TORCH_CHECK(bias.dim() == 1 && bias.size(0) == w.rows(), "weight_product: bias must be [",
                w.rows(), "], got ", bias.sizes());
    y.add_(bias.to(at::kFloat));
  }
  return x.scalar_type() == at::kFloat ? y : y.to(x.scalar_type());
}

}  // namespace flamingo::kernels
