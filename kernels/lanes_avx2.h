// 8 float32 lanes loaded from float32 or bfloat16 (its exact float32 value), shared by the
// AVX2 loops of kernels/attention_row.h and kernels/row_ops.cpp. Torch-free.
#pragma once

#include <immintrin.h>

#include <type_traits>

namespace flamingo::kernels::lanes {

template <typename T>
__attribute__((target("avx2"))) inline __m256 load8(const T* x) {
  if constexpr (std::is_same_v<T, float>) {
    return _mm256_loadu_ps(x);
  } else {
    static_assert(sizeof(T) == 2, "bfloat16 expected");
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
}

}  // namespace flamingo::kernels::lanes
