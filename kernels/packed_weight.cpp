#include "kernels/packed_weight.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <tuple>
#include <vector>

#include "kernels/cpu_isa.h"
#include "kernels/int8_quant.h"
#include "kernels/thread_pool.h"
#include "kernels/transpose16.h"

namespace flamingo::kernels {
const char* weight_type_name(WeightType type) {
  switch (type) {
    case WeightType::kFloat32:
      return "float32";
    case WeightType::kBFloat16:
      return "bfloat16";
    case WeightType::kInt8:
      return "int8";
  }
  return "?";
}

WeightType parse_weight_type(const std::string& name) {
  if (name == "float32" || name == "fp32") return WeightType::kFloat32;
  if (name == "bfloat16" || name == "bf16") return WeightType::kBFloat16;
  if (name == "int8") return WeightType::kInt8;
  throw std::invalid_argument("expected float32, bfloat16 or int8, found '" + name + "'");
}

int64_t weight_type_size(WeightType type) {
  return type == WeightType::kFloat32 ? 4 : type == WeightType::kBFloat16 ? 2 : 1;
}

int64_t packed_bytes(int64_t n, int64_t k, WeightType type, int64_t group) {
  if (type != WeightType::kInt8) return n * k * weight_type_size(type);
  const int64_t blocks = (n + kInt8BlockRows - 1) / kInt8BlockRows;
  const int64_t groups = (k + group - 1) / group;
  return blocks * groups * (kInt8BlockRows * group + kInt8BlockRows * 4);
}

namespace {

// Copies one block between row-major q [rows][k], scales [rows][groups] (rows <= 16) and the
// packed block at `data` with its scales (zeroed before when packing). A whole group of 16 rows
// is a 16 x 16 transpose of 4-byte words where AVX-512 is at hand, else 4 bytes at a time.
template <bool kPack, class Q, class S, class D, class DS>
void copy_block(Q* q, S* s, int64_t rows, int64_t k, D* data, DS* scales) {
  const int64_t groups = (k + kInt8Group - 1) / kInt8Group;
  const bool transpose = active_isa() >= Isa::kAvx512;  // FLAMINGO_KERNEL_ISA may lower it
  const bool words = transpose && rows == kInt8BlockRows && k % 4 == 0;
  for (int64_t g = 0; g < groups; ++g) {
    const int64_t kk = std::min(kInt8Group, k - g * kInt8Group);
    if (words && kk == kInt8Group) {
      if constexpr (kPack) {
        detail::transpose16(q + g * kInt8Group, k / 4, data + g * kInt8BlockBytes, 16);
      } else {
        detail::transpose16(data + g * kInt8BlockBytes, 16, q + g * kInt8Group, k / 4);
      }
      continue;
    }
    for (int64_t r = 0; r < rows; ++r) {
      Q* row = q + r * k + g * kInt8Group;
      D* line = data + g * kInt8BlockBytes + 4 * r;
      for (int64_t c = 0; c < kk; c += 4) {
        const size_t bytes = static_cast<size_t>(std::min<int64_t>(4, kk - c));
        if constexpr (kPack) {
          std::memcpy(line + c * 16, row + c, bytes);
        } else {
          std::memcpy(row + c, line + c * 16, bytes);
        }
      }
    }
  }
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t g = 0; g < groups; ++g) {
      if constexpr (kPack) {
        scales[g * kInt8BlockRows + r] = s[r * groups + g];
      } else {
        s[r * groups + g] = scales[g * kInt8BlockRows + r];
      }
    }
  }
}

// Packed tensors for a weight [n, k]: zeros (padding stays zero), filled block by block by
// fill(block, rows in it, data, scales) on the kernel pool.
template <class Fill>
std::pair<at::Tensor, at::Tensor> packed_int8(int64_t n, int64_t k, const Fill& fill) {
  const int64_t blocks = (n + kInt8BlockRows - 1) / kInt8BlockRows;
  const int64_t groups = (k + kInt8Group - 1) / kInt8Group;
  at::Tensor data = at::zeros({blocks * groups * kInt8BlockBytes}, at::kChar);
  at::Tensor scales = at::zeros({blocks * groups * kInt8BlockRows}, at::kFloat);
  int8_t* d = data.data_ptr<int8_t>();
  float* s = scales.data_ptr<float>();
  constexpr int64_t kBlocksPerTask = 4;
  kernel_pool().run((blocks + kBlocksPerTask - 1) / kBlocksPerTask, [&](int64_t t) {
    for (int64_t b = t * kBlocksPerTask; b < std::min(blocks, (t + 1) * kBlocksPerTask); ++b) {
      fill(b, std::min(kInt8BlockRows, n - b * kInt8BlockRows), d + b * groups * kInt8BlockBytes,
           s + b * groups * kInt8BlockRows);
    }
  });
  return {data, scales};
}

// A per-thread buffer of k bfloat16 values.
std::vector<uint16_t>& bf16_bits(int64_t k) {
  thread_local std::vector<uint16_t> bits;
  bits.resize(static_cast<size_t>(k));
  return bits;
}

}  // namespace

void quantize_int8_row(const float* w, int64_t k, int64_t group, int8_t* q, float* scales) {
  for (int64_t g0 = 0, gi = 0; g0 < k; g0 += group, ++gi) {
    const int64_t g1 = std::min(k, g0 + group);
    float amax = 0.f;
    for (int64_t i = g0; i < g1; ++i) amax = std::max(amax, std::fabs(w[i]));
    const float scale = amax / 127.f;
    scales[gi] = scale;
    for (int64_t i = g0; i < g1; ++i) {
      const float r = scale > 0.f ? std::nearbyint(w[i] / scale) : 0.f;
      q[i] = static_cast<int8_t>(std::clamp(r, -127.f, 127.f));
    }
  }
}

PackedWeight PackedWeight::from_dense(const at::Tensor& w, WeightType type, int64_t group) {
  TORCH_CHECK(w.dim() == 2, "PackedWeight: weight must be [out, in], got ", w.sizes());
  TORCH_CHECK(w.device().is_cpu(), "PackedWeight: CPU weights only, got ", w.device());
  PackedWeight p;
  const int64_t n = w.size(0), k = w.size(1);
  switch (type) {
    case WeightType::kFloat32:
      p.data_ = w.to(at::kFloat).contiguous();
      break;
    case WeightType::kBFloat16:
      p.data_ = w.to(at::kBFloat16).contiguous();
      break;
    case WeightType::kInt8: {
      TORCH_CHECK(group == kInt8Group, "PackedWeight: int8 group must be ", kInt8Group, ", got ",
                  group);
      TORCH_CHECK(w.scalar_type() == at::kFloat || w.scalar_type() == at::kBFloat16 ||
                      w.scalar_type() == at::kHalf,
                  "PackedWeight: cannot quantize a ", w.scalar_type(), " weight");
      const int64_t groups = (k + group - 1) / group;
      const at::Tensor wc = w.contiguous();
      const at::ScalarType st = wc.scalar_type();
      const auto* src = static_cast<const std::byte*>(wc.data_ptr());
      const int64_t esize = static_cast<int64_t>(wc.element_size());
      const Isa isa = active_isa();
      // Block by block on the kernel pool, each row widened into a float32 row of its own.
      std::tie(p.data_, p.scales_) =
          packed_int8(n, k, [&](int64_t b, int64_t rows, int8_t* data, float* scales) {
            if (k == 0) return;  // nothing to quantize (and no row to copy)
            std::vector<float> row(k);
            std::vector<int8_t> q(rows * k);
            std::vector<float> s(rows * groups);
            for (int64_t r = 0; r < rows; ++r) {
              const std::byte* in = src + (b * kInt8BlockRows + r) * k * esize;
              if (st == at::kFloat) {
                std::memcpy(row.data(), in, sizeof(float) * k);
              } else if (st == at::kBFloat16) {  // the high half of a float32's bits
                std::vector<uint16_t>& bits = bf16_bits(k);
                std::memcpy(bits.data(), in, sizeof(uint16_t) * k);
                for (int64_t i = 0; i < k; ++i) {
                  const uint32_t u = uint32_t{bits[i]} << 16;
                  std::memcpy(&row[i], &u, 4);
                }
              } else {
                for (int64_t i = 0; i < k; ++i) {
                  c10::Half h;
                  std::memcpy(&h, in + i * 2, 2);
                  row[i] = static_cast<float>(h);
                }
              }
              detail::quantize_weight_row(row.data(), k, q.data() + r * k, s.data() + r * groups,
                                          isa);
            }
            copy_block<true>(q.data(), s.data(), rows, k, data, scales);
          });
      break;
    }
  }
  p.view_ = WeightView{
      type, n, k, p.data_.data_ptr(), p.scales_.defined() ? p.scales_.data_ptr<float>() : nullptr,
      group};
  return p;
}

PackedWeight PackedWeight::from_int8(const at::Tensor& q, const at::Tensor& scales, int64_t group) {
  TORCH_CHECK(q.dim() == 2 && q.scalar_type() == at::kChar,
              "PackedWeight: int8 weight must be int8 [out, in], got ", q.scalar_type(), " ",
              q.sizes());
  TORCH_CHECK(group == kInt8Group, "PackedWeight: int8 group must be ", kInt8Group, ", got ",
              group);
  const int64_t groups = (q.size(1) + group - 1) / group;
  TORCH_CHECK(scales.dim() == 2 && scales.size(0) == q.size(0) && scales.size(1) == groups &&
                  scales.scalar_type() == at::kFloat,
              "PackedWeight: scales must be float32 [", q.size(0), ", ", groups, "], got ",
              scales.scalar_type(), " ", scales.sizes());
  PackedWeight p;
  const int64_t n = q.size(0), k = q.size(1);
  const at::Tensor qc = q.contiguous(), sc = scales.contiguous();
  const int8_t* qd = qc.data_ptr<int8_t>();
  const float* sd = sc.data_ptr<float>();
  std::atomic<bool> asymmetric{false};  // a -128 anywhere
  std::tie(p.data_, p.scales_) =
      packed_int8(n, k, [&](int64_t b, int64_t rows, int8_t* data, float* s) {
        const int64_t r0 = b * kInt8BlockRows;
        int8_t low = 0;
        for (int64_t i = r0 * k; i < (r0 + rows) * k; ++i) low = std::min(low, qd[i]);
        if (low < -127) asymmetric = true;
        copy_block<true>(qd + r0 * k, sd + r0 * groups, rows, k, data, s);
      });
  TORCH_CHECK(!asymmetric, "PackedWeight: int8 weights must lie in [-127, 127] (symmetric), found ",
              -128);
  p.view_ =
      WeightView{WeightType::kInt8, n, k, p.data_.data_ptr(), p.scales_.data_ptr<float>(), group};
  return p;
}

PackedWeight PackedWeight::join_rows(const PackedWeight& a, const PackedWeight& b) {
  TORCH_CHECK(a.type() == b.type() && a.cols() == b.cols(),
              "PackedWeight::join_rows: weights differ in type or columns");
  if (a.type() != WeightType::kInt8) {
    return from_dense(at::cat({a.data(), b.data()}, 0), a.type());
  }
  if (a.rows() % kInt8BlockRows == 0) {  // whole blocks: the packed tensors simply follow
    PackedWeight p;
    p.data_ = at::cat({a.data_, b.data_}, 0);
    p.scales_ = at::cat({a.scales_, b.scales_}, 0);
    p.view_ = WeightView{WeightType::kInt8,  a.rows() + b.rows(),         a.cols(),
                         p.data_.data_ptr(), p.scales_.data_ptr<float>(), a.group()};
    return p;
  }
  const auto [qa, sa] = a.int8_rows();
  const auto [qb, sb] = b.int8_rows();
  return from_int8(at::cat({qa, qb}, 0), at::cat({sa, sb}, 0), a.group());
}

std::pair<at::Tensor, at::Tensor> PackedWeight::int8_rows() const {
  TORCH_CHECK(view_.type == WeightType::kInt8, "PackedWeight::int8_rows: not an int8 weight");
  const int64_t n = view_.n, k = view_.k, groups = view_.groups();
  at::Tensor q = at::empty({n, k}, at::kChar), s = at::empty({n, groups}, at::kFloat);
  const auto* d = static_cast<const int8_t*>(view_.data);
  const float* ds = view_.scales;
  int8_t* qd = q.data_ptr<int8_t>();
  float* sd = s.data_ptr<float>();
  kernel_pool().run(view_.blocks(), [&](int64_t b) {
    const int64_t r0 = b * kInt8BlockRows;
    copy_block<false>(qd + r0 * k, sd + r0 * groups, std::min(kInt8BlockRows, n - r0), k,
                      d + b * groups * kInt8BlockBytes, ds + b * groups * kInt8BlockRows);
  });
  return {q, s};
}

int64_t PackedWeight::bytes() const {
  return (data_.defined() ? data_.nbytes() : 0) + (scales_.defined() ? scales_.nbytes() : 0);
}

at::Tensor PackedWeight::dequantize() const {
  if (view_.type != WeightType::kInt8) return data_.to(at::kFloat);
  const auto [q, scales] = int8_rows();
  const at::Tensor s = scales.repeat_interleave(view_.group, 1).narrow(1, 0, view_.k);
  return q.to(at::kFloat) * s;
}

}  // namespace flamingo::kernels
