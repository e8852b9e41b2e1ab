// Host-side parts of kernels/cuda/attention.h: the launch plan and the CPU references of the
// kernels' order of sums (compiled by the C++ compiler; no CUDA needed).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cuda/attention.h"
#include "kernels/cuda/bf16_bits.h"
#include "kernels/exp_float.h"

namespace flamingo::kernels::cuda {
namespace {

// The warp's butterfly over 32 values: every lane ends with the same bits; lane 0's.
float butterfly32(float (&v)[32]) {
  for (int o = 16; o >= 1; o /= 2) {
    float next[32];
    for (int l = 0; l < 32; ++l) next[l] = v[l] + v[l ^ o];
    std::memcpy(v, next, sizeof next);
  }
  return v[0];
}

// One (row, head): key_at(j) / value_at(j) point at the d elements of key / value j.
template <class KeyAt, class ValueAt>
void attend_reference(const uint16_t* q, int64_t d, float scale, int64_t keys, KeyAt key_at,
                      ValueAt value_at, uint16_t* out) {
  std::vector<float> qf(d), e(keys);
  for (int64_t i = 0; i < d; ++i) qf[i] = bf16_value(q[i]) * scale;
  float m = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < keys; ++j) {
    const uint16_t* k = key_at(j);
    float lane[32] = {};
    for (int64_t i = 0; i < d; ++i) lane[i % 32] = std::fma(qf[i], bf16_value(k[i]), lane[i % 32]);
    e[j] = butterfly32(lane);
    m = std::max(m, e[j]);
  }
  for (int64_t j = 0; j < keys; ++j) e[j] = exp_float(e[j] - m);
  float warp_sums[32] = {};
  for (int w = 0; w < kAttentionWarps; ++w) {
    float lane[32] = {};
    for (int l = 0; l < 32; ++l) {
      for (int64_t j = 32 * w + l; j < keys; j += kAttentionThreads) lane[l] += e[j];
    }
    warp_sums[w] = butterfly32(lane);
  }
  const float total = butterfly32(warp_sums);
  const float inv = total > 0.f ? 1.f / total : 0.f;
  std::vector<float> part(kAttentionWarps * d, 0.f);
  for (int w = 0; w < kAttentionWarps; ++w) {
    for (int64_t j = w; j < keys; j += kAttentionWarps) {
      const uint16_t* v = value_at(j);
      for (int64_t i = 0; i < d; ++i)
        part[w * d + i] = std::fma(e[j], bf16_value(v[i]), part[w * d + i]);
    }
  }
  for (int64_t i = 0; i < d; ++i) {
    float a = part[i];
    for (int w = 1; w < kAttentionWarps; ++w) a += part[w * d + i];
    out[i] = round_bf16(a * inv);
  }
}

}  // namespace

AttentionPlan attention_plan(int64_t rows, int64_t heads, int64_t d, int64_t max_keys,
                             int64_t shared_limit) {
  if (rows < 0 || heads < 0 || max_keys < 0) {
    throw std::invalid_argument("attention: negative size (rows=" + std::to_string(rows) +
                                " heads=" + std::to_string(heads) +
                                " keys=" + std::to_string(max_keys) + ")");
  }
  if (d < 1 || d > kMaxAttentionHeadDim) {
    throw std::invalid_argument("attention: head dim d=" + std::to_string(d) + " outside [1, " +
                                std::to_string(kMaxAttentionHeadDim) + "]");
  }
  constexpr int64_t kMaxBlocks = std::numeric_limits<int32_t>::max();
  if (heads > 0 && rows > kMaxBlocks / heads) {
    throw std::invalid_argument("attention: rows=" + std::to_string(rows) + " x heads=" +
                                std::to_string(heads) + " blocks: at most 2147483647");
  }
  AttentionPlan p;
  p.blocks = rows * heads;
  p.threads = kAttentionThreads;
  const int64_t sums = kAttentionWarps * d * int64_t{4};
  const int64_t most = std::max<int64_t>(0, (shared_limit - sums) / 4);  // keys that fit
  if (max_keys > most) {
    const std::string need = max_keys <= (int64_t{1} << 40) ? std::to_string(max_keys * 4 + sums)
                                                            : std::string("more than 2^42");
    throw std::invalid_argument("attention: " + std::to_string(max_keys) + " keys need " + need +
                                " bytes of shared memory per block; this device allows " +
                                std::to_string(shared_limit) + " (at most " + std::to_string(most) +
                                " keys at d=" + std::to_string(d) + ")");
  }
  p.shared_bytes = max_keys * 4 + sums;
  return p;
}

void paged_attention_reference(const uint16_t* q, int64_t tokens, int64_t heads, int64_t d,
                               const uint16_t* k_cache, const uint16_t* v_cache, int64_t block_size,
                               const int32_t* block_tables, int64_t max_blocks_per_seq,
                               const int32_t* seq_of_token, const int32_t* context_lens,
                               float scale, uint16_t* out) {
  if (block_size < 1) {
    throw std::invalid_argument("paged_attention: block_size must be >= 1, got " +
                                std::to_string(block_size));
  }
  const int64_t row = heads * d;
  for (int64_t t = 0; t < tokens; ++t) {
    const int32_t* table = block_tables + seq_of_token[t] * max_blocks_per_seq;
    for (int64_t h = 0; h < heads; ++h) {
      auto at = [&](int64_t j) {
        return (table[j / block_size] * block_size + j % block_size) * row + h * d;
      };
      attend_reference(
          q + t * row + h * d, d, scale, context_lens[t],
          [&](int64_t j) { return k_cache + at(j); }, [&](int64_t j) { return v_cache + at(j); },
          out + t * row + h * d);
    }
  }
}

void cross_attention_reference(const uint16_t* q, int64_t rows, int64_t heads, int64_t d,
                               const int32_t* group_of_row, const uint16_t* const* k_groups,
                               const uint16_t* const* v_groups, const int32_t* group_len,
                               float scale, uint16_t* out) {
  for (int64_t r = 0; r < rows; ++r) {
    const int32_t g = group_of_row[r];
    if (g < 0) continue;
    const int64_t len = group_len[g];
    const int64_t row = heads * d;
    for (int64_t h = 0; h < heads; ++h) {
      const uint16_t* k = k_groups[g] + h * d;
      const uint16_t* v = v_groups[g] + h * d;
      attend_reference(
          q + (r * heads + h) * d, d, scale, len, [&](int64_t j) { return k + j * row; },
          [&](int64_t j) { return v + j * row; }, out + (r * heads + h) * d);
    }
  }
}

}  // namespace flamingo::kernels::cuda
