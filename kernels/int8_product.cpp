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
#include <vector>

#include "kernels/product_common.h"

namespace flamingo::kernels {
namespace {

using detail::kKTile;
using detail::kLanes;
using detail::kMaxXBlock;
using detail::kMGroup;
using detail::prefetch_bytes;
using detail::reduce16;

constexpr int64_t kGroup = 64;                    // K per scale, on both sides
constexpr int64_t kTileGroups = kKTile / kGroup;  // groups per K tile
// The bits of the float 1.5 x 2^23: the float with bits kMagic + d is 1.5 x 2^23 + d exactly for
// |d| < 2^22, so subtracting 1.5 x 2^23 gives float(d) with one vsubps (any port) instead of a
// vcvtdq2ps (port 0 only, beside vpdpbusd). A group's d stays within +-64516.
constexpr int32_t kMagic = 0x4B400000;
constexpr float kMagicFloat = 12582912.f;
static_assert(kInt8Group == kGroup && kGroup == 4 * kLanes);

// The quantized activations of all x rows of one product.
struct QuantX {
  int64_t groups = 0, kp = 0;  // kp = groups * 64: each row zero-padded
  bool vnni = false;           // which of a / nc is filled
  std::vector<int8_t> q;       // [m][kp]
  std::vector<uint8_t> a;      // |q| (vpmaddubsw paths)
  std::vector<int32_t> nc;     // [m][groups][16]: VNNI starting sums (see block_vnni)
  std::vector<float> s;        // [m][groups]
};

void quantize_rows(const float* x, int64_t m, int64_t k, bool vnni, QuantX& qx) {
  qx.groups = (k + kGroup - 1) / kGroup;
  qx.kp = qx.groups * kGroup;
  qx.vnni = vnni;
  qx.q.resize(static_cast<size_t>(m * qx.kp));
  qx.s.resize(static_cast<size_t>(m * qx.groups));
  if (vnni) {
    qx.nc.resize(static_cast<size_t>(m * qx.groups * kLanes));
  } else {
    qx.a.resize(static_cast<size_t>(m * qx.kp));
  }
  auto row = [&](int64_t r) {
    int8_t* q = qx.q.data() + r * qx.kp;
    quantize_activation_row(x + r * k, k, q, qx.s.data() + r * qx.groups);
    if (vnni) {
      int32_t* nc = qx.nc.data() + r * qx.groups * kLanes;
      for (int64_t l = 0; l < qx.groups * kLanes; ++l) {
        nc[l] = kMagic - 128 * (q[4 * l] + q[4 * l + 1] + q[4 * l + 2] + q[4 * l + 3]);
      }
    } else {
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

// --- portable path ----------------------------------------------------------------------------

void rows_scalar(const QuantX& qx, const WeightView& w, int64_t m, float* y, int64_t n0,
                 int64_t n1) {
  const auto* wq = static_cast<const int8_t*>(w.data);
  for (int64_t n = n0; n < n1; ++n) {
    for (int64_t r = 0; r < m; ++r) {
      const int8_t* q = qx.q.data() + r * qx.kp;
      float lane[kLanes] = {};
      for (int64_t g = 0; g < qx.groups; ++g) {
        const float cs = qx.s[r * qx.groups + g] * w.scales[n * qx.groups + g];
        for (int64_t l = 0; l < kLanes; ++l) {
          int32_t d = 0;
          for (int64_t t = 0; t < 4; ++t) {
            const int64_t k = g * kGroup + 4 * l + t;
            if (k < w.k) d += q[k] * wq[n * w.k + k];
          }
          lane[l] = std::fma(static_cast<float>(d), cs, lane[l]);
        }
      }
      y[r * w.n + n] = reduce16(lane);
    }
  }
}

// --- blocked vector paths -----------------------------------------------------------------------
//
// As for the other weight types (kernels/weight_product.cpp): per group of up to kMGroup x rows,
// block of kNB weight rows and K tile of 8 groups, every register block of up to 3 x rows
// meets the block's weights; the lane sums live in acc between tiles. The last, partial group
// runs over a zero-padded copy of the weights' tail.

#define FLAMINGO_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,fma")))
#define FLAMINGO_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,fma")))
#define FLAMINGO_AVX2 __attribute__((target("avx2,fma")))

// Micro kernel arguments. x row i: q at q + i * ldq, |q| at a + i * ldq, VNNI starting sums at
// nc + i * ldnc (16 per group), scales at sx + i * lds; weight row j at w + j * ldw, its scales
// at sw + j * lds; `groups` groups of 64 (at most kTileGroups); lane sums of row i, column j at
// acc[i * acc_ld + j * 16].
struct Micro {
  const int8_t* q;
  const uint8_t* a;
  const int32_t* nc;
  int64_t ldq, ldnc;
  const float* sx;
  const int8_t* w;
  int64_t ldw;
  const float* sw;
  int64_t lds;
  int64_t groups;
  float* acc;
  int64_t acc_ld;
  int64_t pf;  // bytes ahead of the weight rows to prefetch (0: none)
};

// cs[i][j][g] = sx[i][g] * sw[j][g] for the block's groups (one float32 rounding, as the
// definition says; vector multiplies round the same way).
template <int MB, int NB>
FLAMINGO_AVX2 inline void combined_scales(const Micro& p, float (*cs)[NB][kTileGroups]) {
  alignas(32) int32_t lanes[kTileGroups];
  for (int g = 0; g < kTileGroups; ++g) lanes[g] = g < p.groups ? -1 : 0;
  const __m256i mask = _mm256_load_si256(reinterpret_cast<const __m256i*>(lanes));
  for (int i = 0; i < MB; ++i) {
    const __m256 sx = _mm256_maskload_ps(p.sx + i * p.lds, mask);
    for (int j = 0; j < NB; ++j) {
      _mm256_storeu_ps(cs[i][j], _mm256_mul_ps(sx, _mm256_maskload_ps(p.sw + j * p.lds, mask)));
    }
  }
}

template <int MB, int NB, bool PF>
FLAMINGO_VNNI inline void block_vnni(const Micro& p) {
  float cs[MB][NB][kTileGroups];
  combined_scales<MB, NB>(p, cs);
  __m512 c[MB][NB];
  detail::load_sums(p.acc, p.acc_ld, c);
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
  const __m512 magic = _mm512_set1_ps(kMagicFloat);
  for (int64_t g = 0; g < p.groups; ++g) {
#pragma GCC unroll 8
    for (int j = 0; j < NB; ++j) {
      const int8_t* wp = p.w + j * p.ldw + g * kGroup;
      if constexpr (PF) _mm_prefetch(reinterpret_cast<const char*>(wp) + p.pf, _MM_HINT_T0);
      // qw + 128 as unsigned bytes; the starting sums take -128 x sum(qx) back out and add
      // kMagic, so that d's bits are the float 1.5 x 2^23 + the lane's integer dot.
      const __m512i wu = _mm512_xor_si512(_mm512_loadu_si512(wp), flip);
#pragma GCC unroll 8
      for (int i = 0; i < MB; ++i) {
        __m512i d = _mm512_loadu_si512(p.nc + i * p.ldnc + g * kLanes);
        d = _mm512_dpbusd_epi32(d, wu, _mm512_loadu_si512(p.q + i * p.ldq + g * kGroup));
        const __m512 dot = _mm512_sub_ps(_mm512_castsi512_ps(d), magic);
        c[i][j] = _mm512_fmadd_ps(dot, _mm512_set1_ps(cs[i][j][g]), c[i][j]);
      }
    }
  }
  detail::store_sums(p.acc, p.acc_ld, c);
}

template <int MB, int NB, bool PF>
FLAMINGO_AVX512 inline void block_avx512(const Micro& p) {
  float cs[MB][NB][kTileGroups];
  combined_scales<MB, NB>(p, cs);
  __m512 c[MB][NB];
  detail::load_sums(p.acc, p.acc_ld, c);
  const __m512i ones = _mm512_set1_epi16(1), zero = _mm512_setzero_si512();
  for (int64_t g = 0; g < p.groups; ++g) {
    __mmask64 neg[MB];
#pragma GCC unroll 8
    for (int i = 0; i < MB; ++i) {
      neg[i] = _mm512_movepi8_mask(_mm512_loadu_si512(p.q + i * p.ldq + g * kGroup));
    }
#pragma GCC unroll 8
    for (int j = 0; j < NB; ++j) {
      const int8_t* wp = p.w + j * p.ldw + g * kGroup;
      if constexpr (PF) _mm_prefetch(reinterpret_cast<const char*>(wp) + p.pf, _MM_HINT_T0);
      const __m512i wv = _mm512_loadu_si512(wp);
#pragma GCC unroll 8
      for (int i = 0; i < MB; ++i) {
        // |qx| x (qw with qx's sign): pairs of products <= 2 x 127 x 127, no saturation.
        const __m512i ws = _mm512_mask_sub_epi8(wv, neg[i], zero, wv);
        const __m512i pairs =
            _mm512_maddubs_epi16(_mm512_loadu_si512(p.a + i * p.ldq + g * kGroup), ws);
        const __m512i d = _mm512_madd_epi16(pairs, ones);
        c[i][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), _mm512_set1_ps(cs[i][j][g]), c[i][j]);
      }
    }
  }
  detail::store_sums(p.acc, p.acc_ld, c);
}

template <int MB, int NB, bool PF>
FLAMINGO_AVX2 inline void block_avx2(const Micro& p) {
  float cs[MB][NB][kTileGroups];
  combined_scales<MB, NB>(p, cs);
  __m256 c[2][MB][NB];  // [lanes 0-7 | 8-15]
  detail::load_sums(p.acc, p.acc_ld, c);
  const __m256i ones = _mm256_set1_epi16(1);
  for (int64_t g = 0; g < p.groups; ++g) {
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {
      const int64_t off = g * kGroup + h * 32;
#pragma GCC unroll 8
      for (int j = 0; j < NB; ++j) {
        const int8_t* wp = p.w + j * p.ldw + off;
        if constexpr (PF) {
          if (h == 0) _mm_prefetch(reinterpret_cast<const char*>(wp) + p.pf, _MM_HINT_T0);
        }
        const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wp));
#pragma GCC unroll 8
        for (int i = 0; i < MB; ++i) {
          const __m256i ws = _mm256_sign_epi8(
              wv, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p.q + i * p.ldq + off)));
          const __m256i pairs = _mm256_maddubs_epi16(
              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p.a + i * p.ldq + off)), ws);
          const __m256i d = _mm256_madd_epi16(pairs, ones);
          c[h][i][j] =
              _mm256_fmadd_ps(_mm256_cvtepi32_ps(d), _mm256_set1_ps(cs[i][j][g]), c[h][i][j]);
        }
      }
    }
  }
  detail::store_sums(p.acc, p.acc_ld, c);
}

enum class Path { kAvx2, kAvx512, kVnni };

template <Path P, int MB, int NB>
void micro(const Micro& p) {
  if constexpr (P == Path::kVnni) {
    p.pf != 0 ? block_vnni<MB, NB, true>(p) : block_vnni<MB, NB, false>(p);
  } else if constexpr (P == Path::kAvx512) {
    p.pf != 0 ? block_avx512<MB, NB, true>(p) : block_avx512<MB, NB, false>(p);
  } else {
    p.pf != 0 ? block_avx2<MB, NB, true>(p) : block_avx2<MB, NB, false>(p);
  }
}

using MicroFn = void (*)(const Micro&);
using MicroRow = std::array<MicroFn, 8>;  // [width - 1]

template <Path P, int MB, size_t... J>
constexpr MicroRow micro_row(std::index_sequence<J...>) {
  return {micro<P, MB, static_cast<int>(J) + 1>...};
}

struct Kernels {
  int64_t nb;                                  // weight rows per block
  std::array<int64_t, kMaxXBlock + 1> width;   // weight rows per micro kernel, by x rows
  std::array<MicroRow, kMaxXBlock + 1> micro;  // [x rows][width - 1]
};

template <Path P>
constexpr Kernels wide_kernels() {  // AVX-512: 3 x 8 sums in zmm
  return {8,
          {0, 8, 8, 8},
          {MicroRow{}, micro_row<P, 1>(std::make_index_sequence<8>()),
           micro_row<P, 2>(std::make_index_sequence<8>()),
           micro_row<P, 3>(std::make_index_sequence<8>())}};
}
const Kernels kVnniKernels = wide_kernels<Path::kVnni>();
const Kernels kAvx512Kernels = wide_kernels<Path::kAvx512>();
// AVX2: each sum is two ymm; 1 x 4 or 3 x 2 of them.
const Kernels kAvx2Kernels{4,
                           {0, 4, 2, 2},
                           {MicroRow{}, micro_row<Path::kAvx2, 1>(std::make_index_sequence<4>()),
                            micro_row<Path::kAvx2, 2>(std::make_index_sequence<2>()),
                            micro_row<Path::kAvx2, 3>(std::make_index_sequence<2>())}};

// Weight rows [n0, n1) on one thread (n0 a multiple of the block height).
void rows_blocked(const QuantX& qx, const WeightView& w, int64_t m, float* y, const Kernels& kern,
                  int64_t n0, int64_t n1) {
  const int64_t groups = qx.groups, full = w.k / kGroup;  // full: groups without padding
  const int64_t acc_ld = kern.nb * kLanes;
  const auto* wq = static_cast<const int8_t*>(w.data);
  alignas(64) float acc[kMGroup * 8 * kLanes];
  alignas(64) int8_t wtail[8 * kGroup];
  for (int64_t m0 = 0; m0 < m; m0 += kMGroup) {
    const int64_t mc = std::min(kMGroup, m - m0);
    const int64_t xblocks = (mc + kMaxXBlock - 1) / kMaxXBlock;  // sizes differ by at most one
    for (int64_t n = n0; n < n1; n += kern.nb) {
      const int64_t nb = std::min(kern.nb, n1 - n);
      std::memset(acc, 0, sizeof(float) * mc * acc_ld);
      // Every x block against the block's weights (at wp, stride ldw) over groups [g0, g0 + gs).
      auto sweep = [&](const int8_t* wp, int64_t ldw, int64_t g0, int64_t gs, bool stream) {
        for (int64_t b = 0, i = 0; b < xblocks; ++b) {
          const int64_t mb = mc / xblocks + (b < mc % xblocks ? 1 : 0);
          const int64_t r = m0 + i;
          for (int64_t j = 0; j < nb; j += kern.width[mb]) {
            const int64_t width = std::min(kern.width[mb], nb - j);
            const Micro p{qx.q.data() + r * qx.kp + g0 * kGroup,
                          qx.vnni ? nullptr : qx.a.data() + r * qx.kp + g0 * kGroup,
                          qx.vnni ? qx.nc.data() + (r * groups + g0) * kLanes : nullptr,
                          qx.kp,
                          groups * kLanes,
                          qx.s.data() + r * groups + g0,
                          wp + j * ldw,
                          ldw,
                          w.scales + (n + j) * groups + g0,
                          groups,
                          gs,
                          acc + i * acc_ld + j * kLanes,
                          acc_ld,
                          b == 0 && stream ? prefetch_bytes() : 0};  // the block that streams
            kern.micro[mb][width - 1](p);
          }
          i += mb;
        }
      };
      for (int64_t g0 = 0; g0 < full; g0 += kTileGroups) {
        sweep(wq + n * w.k + g0 * kGroup, w.k, g0, std::min(kTileGroups, full - g0), true);
      }
      if (full < groups) {
        const int64_t tail = w.k - full * kGroup;
        std::memset(wtail, 0, sizeof wtail);
        for (int64_t j = 0; j < nb; ++j) {
          std::memcpy(wtail + j * kGroup, wq + (n + j) * w.k + full * kGroup, tail);
        }
        sweep(wtail, kGroup, full, 1, false);
      }
      for (int64_t i = 0; i < mc; ++i) {
        float* yrow = y + (m0 + i) * w.n + n;
        if (nb == 8 && &kern != &kAvx2Kernels) {  // the AVX-512 kernels
          detail::reduce16x8(acc + i * acc_ld, yrow);
        } else {
          for (int64_t j = 0; j < nb; ++j) yrow[j] = reduce16(acc + i * acc_ld + j * kLanes);
        }
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
  const Kernels* kern = isa >= Isa::kAvx512Vnni ? &kVnniKernels
                        : isa == Isa::kAvx512   ? &kAvx512Kernels
                        : isa == Isa::kAvx2     ? &kAvx2Kernels
                                                : nullptr;
  // Reused by this thread's products (no allocation once grown). The pool's workers read it
  // through this pointer: a lambda naming a thread_local would reach the worker's own.
  thread_local QuantX buffers;
  const QuantX* qx = &buffers;
  quantize_rows(x, m, w.k, isa >= Isa::kAvx512Vnni, buffers);
  const int64_t unit = kern != nullptr ? kern->nb : 8;
  detail::for_column_ranges(m, w.n, w.k, unit, [=, &w](int64_t n0, int64_t n1) {
    if (kern != nullptr) {
      rows_blocked(*qx, w, m, y, *kern, n0, n1);
    } else {
      rows_scalar(*qx, w, m, y, n0, n1);
    }
  });
}

}  // namespace flamingo::kernels
