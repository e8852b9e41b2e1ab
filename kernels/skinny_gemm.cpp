#include "kernels/skinny_gemm.h"

#include <ATen/Parallel.h>
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <utility>

// at::parallel_for is a header template: without -fopenmp its OpenMP pragma is dropped and every
// call runs on one thread, halving this kernel's speed on the 2-core target without a word.
#if AT_PARALLEL_OPENMP && !defined(_OPENMP)
#error "kernels/skinny_gemm.cpp must be compiled with -fopenmp (ATen's OpenMP parallel_for)"
#endif

namespace flamingo::kernels {
namespace {

struct SkinnyGemmArgs {
  int64_t m, n, k;
  const float* x;  // [m, k]
  const float* w;  // [n, k]
  float* y;        // [m, n]
};

constexpr int64_t kLanes = 8;        // floats per AVX2 vector; the lane count of every row sum
constexpr int64_t kLineFloats = 16;  // floats per 64-byte cache line
constexpr int64_t kKTile = 512;      // floats of K per tile: a weight block's 2 KiB rows stay in L1
constexpr int64_t kXBlock = 3;       // at most this many x rows per register block
constexpr int64_t kRowBlock = 8;     // the widest weight-row block (the unit of thread ranges)
// Register block widths (weight rows) by x rows: one x row meets 8 weight rows (8 independent
// FMA chains and 8 weight streams, which the memory-bound single-row case needs); 2 or 3 x
// rows meet 4 (3 x 4 accumulators + 3 x vectors + 1 weight vector = the 16 ymm registers).
constexpr int64_t kBlockWidth[kXBlock + 1] = {0, 8, 4, 4};
static_assert(kKTile % kLineFloats == 0, "tiles are whole cache lines and whole vectors");

// ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7)): the order the AVX2 kernel's reduction
// takes (high half onto low half, then movehl, then lane 1 onto lane 0).
inline float reduce_lanes(const float* l) {
  return ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
}

// --- scalar kernel --------------------------------------------------------------------------

// Weight rows [n0, n1): for each, the lane sums against every x row (the weight row stays in
// cache across the x rows). Multiply and add round separately here.
void skinny_rows_scalar(const SkinnyGemmArgs& a, int64_t n0, int64_t n1) {
  const int64_t kv = a.k / kLanes * kLanes;
  for (int64_t n = n0; n < n1; ++n) {
    const float* w = a.w + n * a.k;
    for (int64_t m = 0; m < a.m; ++m) {
      const float* x = a.x + m * a.k;
      float lane[kLanes] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
      for (int64_t k = 0; k < kv; k += kLanes) {
        for (int64_t l = 0; l < kLanes; ++l) lane[l] += x[k + l] * w[k + l];
      }
      for (int64_t k = kv; k < a.k; ++k) lane[k - kv] += x[k] * w[k];
      a.y[m * a.n + n] = reduce_lanes(lane);
    }
  }
}

// --- AVX2 + FMA kernel ----------------------------------------------------------------------

#define FLAMINGO_AVX2 __attribute__((target("avx2,fma")))

// MB x rows (row stride ld) against NB weight rows (row stride ld) over `vecs` full vectors of
// K, then, when tail_mask is set, one masked vector. The lane accumulators live in
// acc[(i * kRowBlock + j) * kLanes] between K tiles. Meanwhile it prefetches pf_lines cache
// lines of each of the NB rows at pf (stride ld), spread evenly over its steps.
template <int MB, int NB>
FLAMINGO_AVX2 void micro_avx2(const float* x, const float* w, int64_t ld, int64_t vecs,
                              const int32_t* tail_mask, float* acc, const float* pf,
                              int64_t pf_lines) {
  __m256 c[MB][NB];
#pragma GCC unroll 8
  for (int i = 0; i < MB; ++i) {
#pragma GCC unroll 8
    for (int j = 0; j < NB; ++j) c[i][j] = _mm256_load_ps(acc + (i * kRowBlock + j) * kLanes);
  }
  const int64_t pf_every = pf_lines > 0 ? std::max<int64_t>(1, vecs / pf_lines) : vecs + 1;
  int64_t pf_wait = pf_every, pf_done = 0;
  for (int64_t v = 0; v < vecs; ++v) {
    const int64_t k = v * kLanes;
    if (--pf_wait == 0 && pf_done < pf_lines) {
      pf_wait = pf_every;
#pragma GCC unroll 8
      for (int j = 0; j < NB; ++j) {
        _mm_prefetch(reinterpret_cast<const char*>(pf + j * ld + pf_done * kLineFloats),
                     _MM_HINT_T0);
      }
      ++pf_done;
    }
    __m256 xa[MB];
#pragma GCC unroll 8
    for (int i = 0; i < MB; ++i) xa[i] = _mm256_loadu_ps(x + i * ld + k);
#pragma GCC unroll 8
    for (int j = 0; j < NB; ++j) {
      const __m256 wv = _mm256_loadu_ps(w + j * ld + k);
#pragma GCC unroll 8
      for (int i = 0; i < MB; ++i) c[i][j] = _mm256_fmadd_ps(xa[i], wv, c[i][j]);
    }
  }
  if (tail_mask != nullptr) {  // masked lanes load as 0 (and never fault): 0 * 0 adds nothing
    const __m256i mask = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(tail_mask));
    const int64_t k = vecs * kLanes;
    __m256 xa[MB];
#pragma GCC unroll 8
    for (int i = 0; i < MB; ++i) xa[i] = _mm256_maskload_ps(x + i * ld + k, mask);
#pragma GCC unroll 8
    for (int j = 0; j < NB; ++j) {
      const __m256 wv = _mm256_maskload_ps(w + j * ld + k, mask);
#pragma GCC unroll 8
      for (int i = 0; i < MB; ++i) c[i][j] = _mm256_fmadd_ps(xa[i], wv, c[i][j]);
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < MB; ++i) {
#pragma GCC unroll 8
    for (int j = 0; j < NB; ++j) _mm256_store_ps(acc + (i * kRowBlock + j) * kLanes, c[i][j]);
  }
}

using MicroFn = void (*)(const float*, const float*, int64_t, int64_t, const int32_t*, float*,
                         const float*, int64_t);

template <int MB, size_t... J>
constexpr std::array<MicroFn, kRowBlock> width_table(std::index_sequence<J...>) {
  return {micro_avx2<MB, static_cast<int>(J) + 1>...};
}
// kMicro[mb][nb - 1]: the kernel for mb x rows and nb <= kBlockWidth[mb] weight rows.
constexpr std::array<MicroFn, kRowBlock> kMicro[kXBlock + 1] = {
    {},
    width_table<1>(std::make_index_sequence<kBlockWidth[1]>()),
    width_table<2>(std::make_index_sequence<kBlockWidth[2]>()),
    width_table<3>(std::make_index_sequence<kBlockWidth[3]>()),
};

// The lane sums of a vector, reduced in reduce_lanes' order.
FLAMINGO_AVX2 inline float reduce_avx2(const float* lanes) {
  const __m256 v = _mm256_load_ps(lanes);
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));  // l + (l+4)
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));  // (0+4)+(2+6), (1+5)+(3+7)
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, _MM_SHUFFLE(1, 1, 1, 1)));
  return _mm_cvtss_f32(s);
}

// Weight rows [n0, n1): for each group of up to kMaxSkinnyRows x rows and each block of weight
// rows (8 for one x row, else 4), walk K in tiles; in each tile every register block of x rows
// meets the weight block, which the first brings into L1 from memory. With several x blocks,
// they prefetch the next tile (or the next weight block) between them while they compute, so
// the weight stream overlaps the arithmetic.
FLAMINGO_AVX2 void skinny_rows_avx2(const SkinnyGemmArgs& a, int64_t n0, int64_t n1) {
  alignas(32) float acc[kMaxSkinnyRows * kRowBlock * kLanes];
  int32_t mask[kLanes];
  for (int64_t l = 0; l < kLanes; ++l) mask[l] = l < a.k % kLanes ? -1 : 0;
  constexpr int64_t kTileLines = kKTile / kLineFloats;
  for (int64_t m0 = 0; m0 < a.m; m0 += kMaxSkinnyRows) {
    const int64_t mc = std::min(kMaxSkinnyRows, a.m - m0);
    const int64_t xblocks = (mc + kXBlock - 1) / kXBlock;  // sizes differ by at most one
    const float* xg = a.x + m0 * a.k;
    const int64_t row_block = mc == 1 ? kBlockWidth[1] : kBlockWidth[kXBlock];
    for (int64_t n = n0; n < n1; n += row_block) {
      const int64_t nb = std::min(row_block, n1 - n);
      std::memset(acc, 0, sizeof(float) * mc * kRowBlock * kLanes);
      for (int64_t k0 = 0; k0 < a.k; k0 += kKTile) {
        const int64_t kc = std::min(kKTile, a.k - k0);
        const int32_t* tail = k0 + kc == a.k && kc % kLanes != 0 ? mask : nullptr;
        const float* next = k0 + kKTile < a.k    ? a.w + n * a.k + k0 + kKTile
                            : n + row_block < n1 ? a.w + (n + row_block) * a.k
                                                 : nullptr;
        if (xblocks == 1) next = nullptr;  // one pass: the hardware prefetcher follows it
        for (int64_t b = 0, m = 0; b < xblocks; ++b) {
          const int64_t mb = mc / xblocks + (b < mc % xblocks ? 1 : 0);
          const int64_t line0 = kTileLines * b / xblocks, line1 = kTileLines * (b + 1) / xblocks;
          for (int64_t j = 0; j < nb; j += kBlockWidth[mb]) {
            const int64_t width = std::min(kBlockWidth[mb], nb - j);
            kMicro[mb][width - 1](xg + m * a.k + k0, a.w + (n + j) * a.k + k0, a.k, kc / kLanes,
                                  tail, acc + (m * kRowBlock + j) * kLanes,
                                  next == nullptr ? nullptr : next + j * a.k + line0 * kLineFloats,
                                  next == nullptr ? 0 : line1 - line0);
          }
          m += mb;
        }
      }
      for (int64_t m = 0; m < mc; ++m) {
        float* yrow = a.y + (m0 + m) * a.n + n;
        for (int64_t j = 0; j < nb; ++j) yrow[j] = reduce_avx2(acc + (m * kRowBlock + j) * kLanes);
      }
    }
  }
}

bool cpu_has_avx2_fma() {
  static const bool has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  return has;
}

// Splits the weight rows over at::get_num_threads() threads in contiguous ranges of whole
// kRowBlock blocks; the grain keeps a task at least ~64K multiply-adds, so that small products
// stay on one thread. Below kMinParallelRows rows the product is bound by memory bandwidth,
// which one core nearly saturates on the machines measured, and it runs on the calling thread:
// a thread team then costs more than it gains as soon as another thread (gRPC, the client)
// holds a core, since every product waits for its slowest worker (docs/PERFORMANCE.md).
constexpr int64_t kMinParallelRows = 8;

void skinny_gemm_launch(const SkinnyGemmArgs& a, bool avx2) {
  if (a.m == 0 || a.n == 0) return;
  if (a.m < kMinParallelRows) {
    if (avx2) {
      skinny_rows_avx2(a, 0, a.n);
    } else {
      skinny_rows_scalar(a, 0, a.n);
    }
    return;
  }
  const int64_t blocks = (a.n + kRowBlock - 1) / kRowBlock;
  const int64_t work_per_block = std::max<int64_t>(1, a.m * a.k * kRowBlock);
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 16) / work_per_block);
  at::parallel_for(0, blocks, grain, [&](int64_t b0, int64_t b1) {
    const int64_t n0 = b0 * kRowBlock, n1 = std::min(a.n, b1 * kRowBlock);
    if (avx2) {
      skinny_rows_avx2(a, n0, n1);
    } else {
      skinny_rows_scalar(a, n0, n1);
    }
  });
}

}  // namespace

bool skinny_gemm_has_avx2() { return cpu_has_avx2_fma(); }

at::Tensor skinny_gemm(const at::Tensor& x, const at::Tensor& weight, SkinnyIsa isa) {
  TORCH_CHECK(x.dim() == 2, "skinny_gemm: x must be [M, K], got ", x.sizes());
  TORCH_CHECK(weight.dim() == 2, "skinny_gemm: weight must be [N, K], got ", weight.sizes());
  TORCH_CHECK(x.size(1) == weight.size(1), "skinny_gemm: x has K = ", x.size(1),
              " but weight has K = ", weight.size(1));
  TORCH_CHECK(x.scalar_type() == at::kFloat && weight.scalar_type() == at::kFloat,
              "skinny_gemm: x and weight must be float32, got ", x.scalar_type(), " and ",
              weight.scalar_type());
  TORCH_CHECK(x.device().is_cpu() && weight.device().is_cpu(), "skinny_gemm: CPU kernel got ",
              x.device(), " and ", weight.device(), " tensors");
  const at::Tensor xc = x.contiguous(), wc = weight.contiguous();
  at::Tensor y = at::empty({xc.size(0), wc.size(0)}, xc.options());
  const SkinnyGemmArgs a{xc.size(0),           wc.size(0),           xc.size(1),
                         xc.data_ptr<float>(), wc.data_ptr<float>(), y.data_ptr<float>()};
  skinny_gemm_launch(a, isa == SkinnyIsa::kAuto && cpu_has_avx2_fma());
  return y;
}

}  // namespace flamingo::kernels
