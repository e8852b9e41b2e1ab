#include "kernels/row_attention.h"

#include <algorithm>

#include "kernels/attention_row.h"
#include "kernels/cpu_isa.h"
#include "kernels/thread_pool.h"

namespace flamingo::kernels {
namespace {

template <typename T>
void row_attention_cpu(const T* q, const T* k, const T* v, T* out, int64_t rows, int64_t heads,
                       int64_t len, int64_t d, float scale) {
  const int64_t items = rows * heads;
  // Each task at least ~64K multiply-adds, so that a decode step stays on the calling thread.
  const int64_t per_item = std::max<int64_t>(1, 2 * len * d);
  const int64_t tasks = std::clamp<int64_t>(items * per_item >> 16, 1, 8 * kernel_threads());
  const bool avx2 = active_isa() >= Isa::kAvx2;  // attend_row's AVX2 loops (same bits)
  kernel_pool().run(tasks, [&](int64_t task) {
    AttendScratch scratch;
    for (int64_t i = items * task / tasks; i < items * (task + 1) / tasks; ++i) {
      const int64_t r = i / heads, h = i % heads;
      const T* kh = k + h * len * d;
      const T* vh = v + h * len * d;
      attend_row(
          q + i * d, d, scale, len, [&](int64_t j) { return kh + j * d; },
          [&](int64_t j) { return vh + j * d; }, out + (r * heads + h) * d, scratch, avx2);
    }
  });
}

}  // namespace

at::Tensor row_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                         double scale) {
  TORCH_CHECK(q.dim() == 3, "row_attention: q must be [R, H, D], got ", q.sizes());
  TORCH_CHECK(k.dim() == 3 && k.sizes() == v.sizes(),
              "row_attention: k and v must be [H, L, D] and equal, got ", k.sizes(), " and ",
              v.sizes());
  TORCH_CHECK(k.size(0) == q.size(1) && k.size(2) == q.size(2), "row_attention: k ", k.sizes(),
              " does not match q ", q.sizes());
  TORCH_CHECK(q.scalar_type() == k.scalar_type() && q.scalar_type() == v.scalar_type(),
              "row_attention: q, k and v must share a dtype");
  TORCH_CHECK(q.device().is_cpu(), "row_attention: CPU kernel got a ", q.device(), " tensor");
  const at::Tensor qc = q.contiguous(), kc = k.contiguous(), vc = v.contiguous();
  at::Tensor out = at::empty_like(qc);
  const int64_t rows = qc.size(0), heads = qc.size(1), d = qc.size(2), len = kc.size(1);
  if (qc.scalar_type() == at::kFloat) {
    row_attention_cpu<float>(qc.data_ptr<float>(), kc.data_ptr<float>(), vc.data_ptr<float>(),
                             out.data_ptr<float>(), rows, heads, len, d, static_cast<float>(scale));
  } else if (qc.scalar_type() == at::kBFloat16) {
    row_attention_cpu<at::BFloat16>(qc.data_ptr<at::BFloat16>(), kc.data_ptr<at::BFloat16>(),
                                    vc.data_ptr<at::BFloat16>(), out.data_ptr<at::BFloat16>(), rows,
                                    heads, len, d, static_cast<float>(scale));
  } else {
    TORCH_CHECK(false, "row_attention: unsupported dtype ", qc.scalar_type());
  }
  return out;
}

}  // namespace flamingo::kernels
