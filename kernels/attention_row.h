// One query row of attention against `ctx` keys and values, shared by the attention kernels
// (paged_attention, row_attention): two passes (scores, then the weighted sum of values) in
// float32, inner loops over head_dim. The result depends only on this row's query and its
// keys/values, never on other rows, so every caller is batch-invariant. Thread-safe.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace flamingo::kernels {

// Per-thread scratch of attend_row.
struct AttendScratch {
  std::vector<float> scores, qf, acc;
};

// q_row [d] -> out_row [d] = softmax(q . k_j * scale) . v_j over j in [0, ctx); key_at(j) and
// value_at(j) return pointers to the d elements of key / value j.
template <typename T, typename KeyAt, typename ValueAt>
inline void attend_row(const T* q_row, int64_t d, float scale, int64_t ctx, KeyAt key_at,
                       ValueAt value_at, T* out_row, AttendScratch& s) {
  s.qf.resize(d);
  s.acc.assign(d, 0.f);
  s.scores.resize(ctx);
  for (int64_t i = 0; i < d; ++i) s.qf[i] = static_cast<float>(q_row[i]) * scale;
  float max_score = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < ctx; ++j) {
    const T* k = key_at(j);
    // Eight independent partial sums let the compiler vectorize the reduction.
    float part[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
    int64_t i = 0;
    for (; i + 8 <= d; i += 8) {
      for (int u = 0; u < 8; ++u) part[u] += s.qf[i + u] * static_cast<float>(k[i + u]);
    }
    float dot =
        ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
    for (; i < d; ++i) dot += s.qf[i] * static_cast<float>(k[i]);
    s.scores[j] = dot;
    max_score = std::max(max_score, dot);
  }
  float sum = 0.f;
  for (int64_t j = 0; j < ctx; ++j) {
    s.scores[j] = std::exp(s.scores[j] - max_score);
    sum += s.scores[j];
  }
  for (int64_t j = 0; j < ctx; ++j) {
    const T* v = value_at(j);
    const float p = s.scores[j];
    for (int64_t i = 0; i < d; ++i) s.acc[i] += p * static_cast<float>(v[i]);
  }
  const float inv = sum > 0.f ? 1.f / sum : 0.f;
  for (int64_t i = 0; i < d; ++i) out_row[i] = static_cast<T>(s.acc[i] * inv);
}

}  // namespace flamingo::kernels
