#include "kernels/row_attention.h"

#include <algorithm>

#include "kernels/attention_row.h"
#include "kernels/cpu_isa.h"
#include "kernels/thread_pool.h"

namespace flamingo::kernels {
namespace {

struct Group {
  const void* k;
  const void* v;
  int64_t len;
};

// Rows [begin[g], begin[g + 1]) x every head attend to groups[g].
template <typename T>
void row_attention_cpu(const T* q, T* out, const std::vector<Group>& groups,
                       const std::vector<int64_t>& begin, int64_t heads, int64_t d, float scale) {
  const int64_t first = begin.front(), items = (begin.back() - first) * heads;
  if (items <= 0) return;
  // Each task at least ~64K multiply-adds, so that a decode step stays on the calling thread.
  int64_t work = 0;
  for (size_t g = 0; g < groups.size(); ++g) {
    work += (begin[g + 1] - begin[g]) * heads * std::max<int64_t>(1, 2 * groups[g].len * d);
  }
  const int64_t tasks = std::clamp<int64_t>(work >> 16, 1, 8 * kernel_threads());
  const bool avx2 = active_isa() >= Isa::kAvx2;  // attend_row's AVX2 loops (same bits)
  kernel_pool().run(tasks, [&](int64_t task) {
    AttendScratch scratch;
    const int64_t i0 = items * task / tasks, i1 = items * (task + 1) / tasks;
    size_t g = std::upper_bound(begin.begin(), begin.end(), first + i0 / heads) - begin.begin() - 1;
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t r = first + i / heads, h = i % heads;
      while (r >= begin[g + 1]) ++g;
      const int64_t len = groups[g].len;
      const T* kh = static_cast<const T*>(groups[g].k) + h * len * d;
      const T* vh = static_cast<const T*>(groups[g].v) + h * len * d;
      attend_row(
          q + (r * heads + h) * d, d, scale, len, [&](int64_t j) { return kh + j * d; },
          [&](int64_t j) { return vh + j * d; }, out + (r * heads + h) * d, scratch, avx2);
    }
  });
}

}  // namespace

void row_attention_groups(const at::Tensor& q, const std::vector<RowAttentionKV>& kv,
                          const std::vector<int64_t>& begin, double scale, at::Tensor& out) {
  TORCH_CHECK(q.dim() == 3, "row_attention: q must be [R, H, D], got ", q.sizes());
  TORCH_CHECK(q.is_contiguous() && out.is_contiguous() && out.sizes() == q.sizes() &&
                  out.scalar_type() == q.scalar_type(),
              "row_attention: q and out must be contiguous, of one shape and dtype");
  TORCH_CHECK(q.device().is_cpu(), "row_attention: CPU kernel got a ", q.device(), " tensor");
  TORCH_CHECK(begin.size() == kv.size() + 1 && std::is_sorted(begin.begin(), begin.end()) &&
                  begin.front() >= 0 && begin.back() <= q.size(0),
              "row_attention: ", kv.size(), " groups need ", kv.size() + 1,
              " non-decreasing bounds in [0, ", q.size(0), "], got ", begin.size(), " bounds");
  std::vector<Group> groups;
  for (const RowAttentionKV& g : kv) {
    const at::Tensor& k = *g.k;
    const at::Tensor& v = *g.v;
    TORCH_CHECK(k.dim() == 3 && k.sizes() == v.sizes(),
                "row_attention: k and v must be [H, L, D] and equal, got ", k.sizes(), " and ",
                v.sizes());
    TORCH_CHECK(k.size(0) == q.size(1) && k.size(2) == q.size(2), "row_attention: k ", k.sizes(),
                " does not match q ", q.sizes());
    TORCH_CHECK(q.scalar_type() == k.scalar_type() && q.scalar_type() == v.scalar_type(),
                "row_attention: q, k and v must share a dtype");
    TORCH_CHECK(k.is_contiguous() && v.is_contiguous(),
                "row_attention: k and v must be contiguous");
    groups.push_back({k.data_ptr(), v.data_ptr(), k.size(1)});
  }
  const int64_t heads = q.size(1), d = q.size(2);
  if (q.scalar_type() == at::kFloat) {
    row_attention_cpu<float>(q.data_ptr<float>(), out.data_ptr<float>(), groups, begin, heads, d,
                             static_cast<float>(scale));
  } else if (q.scalar_type() == at::kBFloat16) {
    row_attention_cpu<at::BFloat16>(q.data_ptr<at::BFloat16>(), out.data_ptr<at::BFloat16>(),
                                    groups, begin, heads, d, static_cast<float>(scale));
  } else {
    TORCH_CHECK(false, "row_attention: unsupported dtype ", q.scalar_type());
  }
}

at::Tensor row_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                         double scale) {
  TORCH_CHECK(q.dim() == 3, "row_attention: q must be [R, H, D], got ", q.sizes());
  const at::Tensor qc = q.contiguous(), kc = k.contiguous(), vc = v.contiguous();
  at::Tensor out = at::empty_like(qc);
  row_attention_groups(qc, {{&kc, &vc}}, {0, qc.size(0)}, scale, out);
  return out;
}

}  // namespace flamingo::kernels
