#include "kernels/int8_product.h"

// GCC 12 warns about the undefined upper lanes that its own AVX-512 widening intrinsics start
// from (_mm512_undefined_*): a false positive.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <utility>

#include "kernels/amx_int8.h"
#include "kernels/int8_quant.h"
#include "kernels/product_common.h"

namespace flamingo::kernels {
namespace {

using detail::kAhead;
using detail::kNoPrefetch;
using detail::kShare;
using detail::Prefetch;
using detail::QuantX;
constexpr int64_t kGroup = kInt8Group;     // K per scale, on both sides
constexpr int64_t kRows = kInt8BlockRows;  // weight rows per packed block
constexpr int64_t kLine = 64;              // bytes per K quad of a block
constexpr int64_t kQuads = kGroup / 4;     // lines per block and group
constexpr int64_t kGTile = 8;              // groups per K tile: 4 blocks x 8 KB stay in L1
constexpr int64_t kMGroup = 48;            // x rows per pass over the weights (they stay in L2)
constexpr int64_t kMaxNb = 4;              // blocks per micro kernel
constexpr int64_t kMaxMb = 4;              // x rows per micro kernel
static_assert(kGroup == 64 && kRows == 16);
static_assert(kMGroup <= detail::kMGroup, "detail::XBlocks holds a group's blocks");

// --- portable path ------------------------------------------------------------------------------

void rows_scalar(const QuantX& qx, const WeightView& w, int64_t m, float* y, int64_t n0,
                 int64_t n1) {
  const auto* wq = static_cast<const int8_t*>(w.data);
  const int64_t groups = qx.groups;
  for (int64_t n = n0; n < n1; ++n) {
    for (int64_t r = 0; r < m; ++r) {
      const int8_t* q = qx.q.data() + r * qx.kp;
      float acc = 0.f;
      for (int64_t g = 0; g < groups; ++g) {
        int32_t d = 0;
        for (int64_t k = g * kGroup; k < (g + 1) * kGroup; ++k) {
          d += q[k] * wq[int8_packed_offset(n, k, groups)];
        }
        const float cs = qx.s[r * groups + g] * w.scales[int8_packed_scale_offset(n, g, groups)];
        acc = std::fma(static_cast<float>(d), cs, acc);
      }
      y[r * w.n + n] = acc;
    }
  }
}

// --- blocked vector paths -----------------------------------------------------------------------
//
// Per group of up to kMGroup x rows, run of up to kMaxNb blocks (16 weight rows each) and K tile
// of kGTile groups, every register block of up to kMaxMb x rows meets the blocks' lines: each
// line is loaded once and multiplied with a broadcast quad of each x row; a group's integer
// sums stay in registers, its scaled sum goes into the float sums in acc.

#define FLAMINGO_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,fma")))
#define FLAMINGO_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,fma")))
#define FLAMINGO_AVX2 __attribute__((target("avx2,fma")))

// Micro kernel arguments. x row i: q at q + i * ldq, |q| at a + i * ldq (group 0 of the tile
// at offset 0), VNNI starting sums at start + i * lds, scales at sx + i * lds; block j's group g
// at w + j * ldw + g * 1024, its scales at sw + j * ldsw + g * 16; `groups` groups; the float
// sums of row i, block j at acc[i * acc_ld + j * 16].
struct Micro {
  const int8_t* q;
  const uint8_t* a;
  const int32_t* start;
  int64_t ldq;
  const float* sx;
  int64_t lds;
  const int8_t* w;
  int64_t ldw;
  const float* sw;
  int64_t ldsw;
  int64_t groups;
  float* acc;
  int64_t acc_ld;
  int64_t pf;  // bytes ahead of the weight lines to prefetch (0: none)
  // Instead (pf 0): a share of the next blocks' weights, over the groups x kQuads steps
  // (detail::prefetch_share_lines).
  detail::NextBlock::Share share = {};
};

inline int32_t quad(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// acc += float(d) * (sw * sx) for a group's 16 columns, the definition's one fma per group.
template <int MB, int NB>
FLAMINGO_AVX512 inline void scale_into(const Micro& p, int64_t g, const __m512i (&d)[MB][NB]) {
#pragma GCC unroll 4
  for (int i = 0; i < MB; ++i) {
    const __m512 sx = _mm512_set1_ps(p.sx[i * p.lds + g]);
#pragma GCC unroll 4
    for (int j = 0; j < NB; ++j) {
      float* acc = p.acc + i * p.acc_ld + j * kRows;
      const __m512 cs = _mm512_mul_ps(_mm512_loadu_ps(p.sw + j * p.ldsw + g * kRows), sx);
      _mm512_store_ps(acc, _mm512_fmadd_ps(_mm512_cvtepi32_ps(d[i][j]), cs, _mm512_load_ps(acc)));
    }
  }
}

template <int MB, int NB, Prefetch PF>
FLAMINGO_VNNI void block_vnni(const Micro& p) {
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
  for (int64_t g = 0; g < p.groups; ++g) {
    __m512i d[MB][NB];
#pragma GCC unroll 4
    for (int i = 0; i < MB; ++i) {
      const __m512i start = _mm512_set1_epi32(p.start[i * p.lds + g]);
#pragma GCC unroll 4
      for (int j = 0; j < NB; ++j) d[i][j] = start;
    }
    const int8_t* wg = p.w + g * kInt8BlockBytes;
    const int8_t* qg = p.q + g * kGroup;
#pragma GCC unroll 16
    for (int l = 0; l < kQuads; ++l) {
      if constexpr (PF == kShare) {
        detail::prefetch_share_lines(p.share, p.groups * kQuads, g * kQuads + l);
      }
      __m512i wu[NB];
#pragma GCC unroll 4
      for (int j = 0; j < NB; ++j) {
        const int8_t* wp = wg + j * p.ldw + l * kLine;
        if constexpr (PF == kAhead) {
          _mm_prefetch(reinterpret_cast<const char*>(wp) + p.pf, _MM_HINT_T0);
        }
        // qw + 128 as unsigned bytes; the starting sum takes -128 x sum(qx) back out.
        wu[j] = _mm512_xor_si512(_mm512_load_si512(wp), flip);
      }
#pragma GCC unroll 4
      for (int i = 0; i < MB; ++i) {
        const __m512i xq = _mm512_set1_epi32(quad(qg + i * p.ldq + 4 * l));
#pragma GCC unroll 4
        for (int j = 0; j < NB; ++j) d[i][j] = _mm512_dpbusd_epi32(d[i][j], wu[j], xq);
      }
    }
    scale_into<MB, NB>(p, g, d);
  }
}

template <int MB, int NB, Prefetch PF>
FLAMINGO_AVX512 void block_avx512(const Micro& p) {
  const __m512i ones = _mm512_set1_epi16(1), zero = _mm512_setzero_si512();
  for (int64_t g = 0; g < p.groups; ++g) {
    __m512i d[MB][NB];
#pragma GCC unroll 4
    for (int i = 0; i < MB; ++i) {
#pragma GCC unroll 4
      for (int j = 0; j < NB; ++j) d[i][j] = zero;
    }
    const int8_t* wg = p.w + g * kInt8BlockBytes;
#pragma GCC unroll 16
    for (int l = 0; l < kQuads; ++l) {
      if constexpr (PF == kShare) {
        detail::prefetch_share_lines(p.share, p.groups * kQuads, g * kQuads + l);
      }
      __m512i wv[NB];
#pragma GCC unroll 4
      for (int j = 0; j < NB; ++j) {
        const int8_t* wp = wg + j * p.ldw + l * kLine;
        if constexpr (PF == kAhead) {
          _mm_prefetch(reinterpret_cast<const char*>(wp) + p.pf, _MM_HINT_T0);
        }
        wv[j] = _mm512_load_si512(wp);
      }
#pragma GCC unroll 4
      for (int i = 0; i < MB; ++i) {
        const int64_t off = i * p.ldq + g * kGroup + 4 * l;
        const __mmask64 neg = _mm512_movepi8_mask(_mm512_set1_epi32(quad(p.q + off)));
        const __m512i xa = _mm512_set1_epi32(quad(reinterpret_cast<const int8_t*>(p.a) + off));
#pragma GCC unroll 4
        for (int j = 0; j < NB; ++j) {
          // |qx| x (qw with qx's sign): pairs of products <= 2 x 127 x 127, no saturation.
          const __m512i ws = _mm512_mask_sub_epi8(wv[j], neg, zero, wv[j]);
          d[i][j] =
              _mm512_add_epi32(d[i][j], _mm512_madd_epi16(_mm512_maddubs_epi16(xa, ws), ones));
        }
      }
    }
    scale_into<MB, NB>(p, g, d);
  }
}

template <int MB, int NB, Prefetch PF>
FLAMINGO_AVX2 void block_avx2(const Micro& p) {
  const __m256i ones = _mm256_set1_epi16(1);
  for (int64_t g = 0; g < p.groups; ++g) {
    __m256i d[MB][NB][2];  // [.. | rows 0-7, 8-15 of the block]
#pragma GCC unroll 4
    for (int i = 0; i < MB; ++i) {
#pragma GCC unroll 4
      for (int j = 0; j < NB; ++j) d[i][j][0] = d[i][j][1] = _mm256_setzero_si256();
    }
    const int8_t* wg = p.w + g * kInt8BlockBytes;
#pragma GCC unroll 16
    for (int l = 0; l < kQuads; ++l) {
      if constexpr (PF == kShare) {
        detail::prefetch_share_lines(p.share, p.groups * kQuads, g * kQuads + l);
      }
      __m256i wv[NB][2];
#pragma GCC unroll 4
      for (int j = 0; j < NB; ++j) {
        const int8_t* wp = wg + j * p.ldw + l * kLine;
        if constexpr (PF == kAhead) {
          _mm_prefetch(reinterpret_cast<const char*>(wp) + p.pf, _MM_HINT_T0);
        }
        wv[j][0] = _mm256_load_si256(reinterpret_cast<const __m256i*>(wp));
        wv[j][1] = _mm256_load_si256(reinterpret_cast<const __m256i*>(wp + 32));
      }
#pragma GCC unroll 4
      for (int i = 0; i < MB; ++i) {
        const int64_t off = i * p.ldq + g * kGroup + 4 * l;
        const __m256i xq = _mm256_set1_epi32(quad(p.q + off));
        const __m256i xa = _mm256_set1_epi32(quad(reinterpret_cast<const int8_t*>(p.a) + off));
#pragma GCC unroll 4
        for (int j = 0; j < NB; ++j) {
#pragma GCC unroll 2
          for (int h = 0; h < 2; ++h) {
            const __m256i ws = _mm256_sign_epi8(wv[j][h], xq);
            d[i][j][h] =
                _mm256_add_epi32(d[i][j][h], _mm256_madd_epi16(_mm256_maddubs_epi16(xa, ws), ones));
          }
        }
      }
    }
#pragma GCC unroll 4
    for (int i = 0; i < MB; ++i) {
      const __m256 sx = _mm256_set1_ps(p.sx[i * p.lds + g]);
#pragma GCC unroll 4
      for (int j = 0; j < NB; ++j) {
#pragma GCC unroll 2
        for (int h = 0; h < 2; ++h) {
          float* acc = p.acc + i * p.acc_ld + j * kRows + 8 * h;
          const __m256 cs =
              _mm256_mul_ps(_mm256_loadu_ps(p.sw + j * p.ldsw + g * kRows + 8 * h), sx);
          _mm256_store_ps(acc,
                          _mm256_fmadd_ps(_mm256_cvtepi32_ps(d[i][j][h]), cs, _mm256_load_ps(acc)));
        }
      }
    }
  }
}

enum class Path { kAvx2, kAvx512, kVnni };

template <Path P, int MB, int NB>
void micro(const Micro& p) {
  if constexpr (P == Path::kVnni) {
    p.pf != 0           ? block_vnni<MB, NB, kAhead>(p)
    : p.share.lines > 0 ? block_vnni<MB, NB, kShare>(p)
                        : block_vnni<MB, NB, kNoPrefetch>(p);
  } else if constexpr (P == Path::kAvx512) {
    p.pf != 0           ? block_avx512<MB, NB, kAhead>(p)
    : p.share.lines > 0 ? block_avx512<MB, NB, kShare>(p)
                        : block_avx512<MB, NB, kNoPrefetch>(p);
  } else {
    p.pf != 0           ? block_avx2<MB, NB, kAhead>(p)
    : p.share.lines > 0 ? block_avx2<MB, NB, kShare>(p)
                        : block_avx2<MB, NB, kNoPrefetch>(p);
  }
}

using MicroFn = void (*)(const Micro&);
using MicroRow = std::array<MicroFn, kMaxNb>;  // [blocks - 1]

template <Path P, int MB>
constexpr MicroRow micro_row() {
  return {micro<P, MB, 1>, micro<P, MB, 2>, micro<P, MB, 3>, micro<P, MB, 4>};
}
template <Path P, int MB>
constexpr MicroRow micro_row_narrow() {  // AVX2: at most 2 blocks (16 ymm)
  return {micro<P, MB, 1>, micro<P, MB, 2>, nullptr, nullptr};
}

struct Kernels {
  int64_t nb, mb;                          // blocks and x rows per micro kernel, at most
  std::array<MicroRow, kMaxMb + 1> micro;  // [x rows][blocks - 1]
  // From how many x blocks the register blocks share the next blocks' prefetch
  // (detail::NextBlock): below it the product is bound by memory and the first x block's
  // stream ahead into L1 is faster (VNNI at 5-12 rows: 7-15% slower shared; measured,
  // docs/PERFORMANCE.md).
  int64_t share_from;
};

template <Path P>
constexpr Kernels wide_kernels() {  // AVX-512: 4 x 4 integer sums in zmm
  return {4,
          4,
          {MicroRow{}, micro_row<P, 1>(), micro_row<P, 2>(), micro_row<P, 3>(), micro_row<P, 4>()},
          P == Path::kVnni ? 4 : 2};
}
const Kernels kVnniKernels = wide_kernels<Path::kVnni>();
const Kernels kAvx512Kernels = wide_kernels<Path::kAvx512>();
const Kernels kAvx2Kernels{2,
                           2,
                           {MicroRow{}, micro_row_narrow<Path::kAvx2, 1>(),
                            micro_row_narrow<Path::kAvx2, 2>(), MicroRow{}, MicroRow{}},
                           2};

// Output columns [n0, n1) (n0 a multiple of 16) on one thread.
void rows_blocked(const QuantX& qx, const WeightView& w, int64_t m, float* y, const Kernels& kern,
                  int64_t n0, int64_t n1) {
  const int64_t groups = qx.groups;
  const int64_t acc_ld = kMaxNb * kRows;
  const auto* wq = static_cast<const int8_t*>(w.data);
  alignas(64) float acc[kMGroup * kMaxNb * kRows];
  const int64_t b0 = n0 / kRows, b1 = (n1 + kRows - 1) / kRows;
  for (int64_t m0 = 0; m0 < m; m0 += kMGroup) {
    const int64_t mc = std::min(kMGroup, m - m0);
    const detail::XBlocks xrows(mc, kern.mb);
    const int64_t xblocks = xrows.count;
    for (int64_t b = b0; b < b1; b += kern.nb) {
      const int64_t nb = std::min(kern.nb, b1 - b);
      std::memset(acc, 0, sizeof(float) * mc * acc_ld);
      // The next blocks (none past the range); with several x blocks, each prefetches its
      // share of them (detail::NextBlock) instead of the first streaming ahead alone.
      const int64_t next_nb = std::min(kern.nb, b1 - b - nb);
      const detail::NextBlock next(next_nb > 0 ? wq + (b + nb) * groups * kInt8BlockBytes : nullptr,
                                   next_nb * groups * kInt8BlockBytes);
      for (int64_t g0 = 0; g0 < groups; g0 += kGTile) {
        const int64_t gs = std::min(kGTile, groups - g0);
        const bool shared = detail::prefetch_bytes() != 0 && xblocks >= kern.share_from &&
                            next.fits(g0, g0 + gs, groups, gs * kQuads, xblocks);
        auto shares =
            shared ? next.shares(g0, g0 + gs, groups, xblocks) : detail::NextBlock::Shares{};
        for (int64_t xb = 0, i = 0; xb < xblocks; ++xb) {
          const int64_t mb = xrows.rows[xb];
          const int64_t r = m0 + i;
          Micro p{qx.q.data() + r * qx.kp + g0 * kGroup,
                  qx.a.empty() ? nullptr : qx.a.data() + r * qx.kp + g0 * kGroup,
                  qx.start.empty() ? nullptr : qx.start.data() + r * groups + g0,
                  qx.kp,
                  qx.s.data() + r * groups + g0,
                  groups,
                  wq + (b * groups + g0) * kInt8BlockBytes,
                  groups * kInt8BlockBytes,
                  w.scales + (b * groups + g0) * kRows,
                  groups * kRows,
                  gs,
                  acc + i * acc_ld,
                  acc_ld,
                  xb == 0 && !shared ? detail::prefetch_bytes() : 0};  // the block that streams
          if (shared) p.share = shares.next();
          kern.micro[mb][nb - 1](p);
          i += mb;
        }
      }
      const int64_t c0 = b * kRows, c1 = std::min(n1, (b + nb) * kRows);
      for (int64_t i = 0; i < mc; ++i) {
        std::memcpy(y + (m0 + i) * w.n + c0, acc + i * acc_ld, sizeof(float) * (c1 - c0));
      }
    }
  }
}

}  // namespace

void quantize_activation_row(const float* x, int64_t k, int8_t* q, float* scales) {
  const int64_t groups = (k + kGroup - 1) / kGroup;
  for (int64_t g = 0; g < groups; ++g) {
    const int64_t g0 = g * kGroup, g1 = std::min(k, g0 + kGroup);
    float amax = 0.f;
    bool finite = true;
    for (int64_t i = g0; i < g1; ++i) {
      finite = finite && std::isfinite(x[i]);
      amax = std::max(amax, std::fabs(x[i]));
    }
    const float scale = finite ? amax / 127.f : std::numeric_limits<float>::quiet_NaN();
    scales[g] = scale;
    for (int64_t i = g0; i < g0 + kGroup; ++i) {
      const float r = i < g1 && scale > 0.f ? std::nearbyint(x[i] / scale) : 0.f;
      q[i] = static_cast<int8_t>(std::clamp(r, -127.f, 127.f));
    }
  }
}

void int8_product_raw(const float* x, int64_t m, const WeightView& w, float* y, Isa isa) {
  if (m <= 0 || w.n <= 0) return;
  if (w.k == 0) {
    std::fill(y, y + m * w.n, 0.f);
    return;
  }
  isa = std::min(isa, cpu_isa());
  const bool amx = isa >= Isa::kAmx && m >= kAmxInt8MinRows;
  const Kernels* kern = isa >= Isa::kAvx512Vnni ? &kVnniKernels
                        : isa == Isa::kAvx512   ? &kAvx512Kernels
                        : isa == Isa::kAvx2     ? &kAvx2Kernels
                                                : nullptr;
  // Reused by this thread's products (no allocation once grown). The pool's workers read it
  // through this pointer: a lambda naming a thread_local would reach the worker's own.
  thread_local QuantX buffers;
  const QuantX* qx = &buffers;
  const auto extra = amx                       ? detail::QuantExtra::kTileRows
                     : isa >= Isa::kAvx512Vnni ? detail::QuantExtra::kStartSums
                     : kern != nullptr         ? detail::QuantExtra::kMagnitudes
                                               : detail::QuantExtra::kNone;
  detail::quantize_rows(x, m, w.k, extra, isa, buffers);
  detail::for_column_ranges(m, w.n, w.k, kRows, [=, &w](int64_t n0, int64_t n1) {
    if (amx) {
      amx_int8_columns(*qx, m, w, y, n0, n1);
    } else if (kern != nullptr) {
      rows_blocked(*qx, w, m, y, *kern, n0, n1);
    } else {
      rows_scalar(*qx, w, m, y, n0, n1);
    }
  });
}

}  // namespace flamingo::kernels
