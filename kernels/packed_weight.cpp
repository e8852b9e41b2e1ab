#include "kernels/packed_weight.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "kernels/thread_pool.h"

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
  const int64_t scales = type == WeightType::kInt8 ? n * ((k + group - 1) / group) * 4 : 0;
  return n * k * weight_type_size(type) + scales;
}

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
      p.data_ = at::empty({n, k}, at::kChar);
      p.scales_ = at::empty({n, groups}, at::kFloat);
      const at::Tensor wc = w.contiguous();
      const at::ScalarType st = wc.scalar_type();
      const auto* src = static_cast<const std::byte*>(wc.data_ptr());
      const int64_t esize = static_cast<int64_t>(wc.element_size());
      int8_t* q = p.data_.data_ptr<int8_t>();
      float* scales = p.scales_.data_ptr<float>();
      // Rows in parallel on the kernel pool, each widened into a float32 row of its own.
      constexpr int64_t kRowsPerTask = 64;
      kernel_pool().run((n + kRowsPerTask - 1) / kRowsPerTask, [&](int64_t t) {
        std::vector<float> row(k);
        for (int64_t r = t * kRowsPerTask; r < std::min(n, (t + 1) * kRowsPerTask); ++r) {
          const std::byte* in = src + r * k * esize;
          for (int64_t i = 0; i < k; ++i) {
            if (st == at::kFloat) {
              std::memcpy(&row[i], in + i * 4, 4);
            } else if (st == at::kBFloat16) {
              c10::BFloat16 b;
              std::memcpy(&b, in + i * 2, 2);
              row[i] = static_cast<float>(b);
            } else {
              c10::Half h;
              std::memcpy(&h, in + i * 2, 2);
              row[i] = static_cast<float>(h);
            }
          }
          quantize_int8_row(row.data(), k, group, q + r * k, scales + r * groups);
        }
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
  TORCH_CHECK(q.numel() == 0 || q.min().item<int8_t>() >= -127,
              "PackedWeight: int8 weights must lie in [-127, 127] (symmetric), found ",
              static_cast<int>(q.min().item<int8_t>()));
  PackedWeight p;
  p.data_ = q.contiguous();
  p.scales_ = scales.contiguous();
  p.view_ = WeightView{WeightType::kInt8,           q.size(0), q.size(1), p.data_.data_ptr(),
                       p.scales_.data_ptr<float>(), group};
  return p;
}

int64_t PackedWeight::bytes() const {
  return (data_.defined() ? data_.nbytes() : 0) + (scales_.defined() ? scales_.nbytes() : 0);
}

at::Tensor PackedWeight::dequantize() const {
  if (view_.type != WeightType::kInt8) return data_.to(at::kFloat);
  const at::Tensor s = scales_.repeat_interleave(view_.group, 1).narrow(1, 0, view_.k);
  return data_.to(at::kFloat) * s;
}

}  // namespace flamingo::kernels
