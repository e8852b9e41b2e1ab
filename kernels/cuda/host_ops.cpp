// DecoderOps on host memory through the CUDA kernels' CPU references (kernels/cuda/decoder_ops.h).
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#include "kernels/cuda/attention.h"
#include "kernels/cuda/decoder_ops.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/rms_norm_residual.h"
#include "kernels/cuda/rotary.h"
#include "kernels/cuda/skinny_product.h"
#include "kernels/cuda/swiglu.h"

namespace flamingo::kernels::cuda {
namespace {

class HostOps final : public DecoderOps {
 public:
  const char* name() const override { return "host"; }
  void* alloc(int64_t bytes) override {
    void* p = std::calloc(static_cast<size_t>(bytes > 0 ? bytes : 1), 1);
    if (p == nullptr) {
      throw std::runtime_error("host ops: cannot allocate " + std::to_string(bytes) + " bytes");
    }
    return p;
  }
  void release(void* p) override { std::free(p); }
  void zero(void* p, int64_t bytes) override { std::memset(p, 0, bytes); }
  void upload(void* dst, const void* src, int64_t bytes) override { std::memcpy(dst, src, bytes); }
  void download(void* dst, const void* src, int64_t bytes) override {
    std::memcpy(dst, src, bytes);
  }
  void product(const uint16_t* x, int64_t m, const uint16_t* w, int64_t n, int64_t k,
               float* y) override {
    // The order the GPU takes for these pointers (16-byte aligned: calloc'd, offsets of
    // whole rows of k % 8 == 0 elements keep it).
    skinny_bf16_reference(x, m, w, n, k, y, skinny_bf16_plan(m, n, k, x, w).vectorized);
  }
  void to_bf16(const float* x, uint16_t* y, int64_t n) override { to_bf16_reference(x, y, n); }
  void rms_norm(uint16_t* h, const uint16_t* delta, const uint16_t* weight, uint16_t* y,
                int64_t rows, int64_t d, float eps) override {
    rms_norm_residual_reference(h, delta, weight, y, rows, d, eps);
  }
  void rotary(const uint16_t* x, const uint16_t* cos, const uint16_t* sin, uint16_t* y,
              int64_t tokens, int64_t heads, int64_t d) override {
    rotary_reference(x, cos, sin, y, tokens, heads, d);
  }
  void swiglu(const uint16_t* g, const uint16_t* u, uint16_t* y, int64_t n) override {
    swiglu_reference(g, u, y, n);
  }
  void gather_rows(const uint16_t* table, int64_t width, const int32_t* index, int64_t rows,
                   uint16_t* out) override {
    gather_rows_reference(table, width, index, rows, out);
  }
  void scatter_rows(const uint16_t* src, int64_t width, const int32_t* index, int64_t rows,
                    uint16_t* table) override {
    scatter_rows_reference(src, width, index, rows, table);
  }
  void gated_add(uint16_t* h, const uint16_t* gate, int64_t gate_len, const uint16_t* y,
                 int64_t rows, int64_t d) override {
    gated_add_reference(h, gate, gate_len, y, rows, d);
  }
  void paged_attention(const uint16_t* q, int64_t tokens, int64_t heads, int64_t d,
                       const uint16_t* k_cache, const uint16_t* v_cache, int64_t block_size,
                       const int32_t* block_tables, int64_t max_blocks_per_seq,
                       const int32_t* seq_of_token, const int32_t* context_lens, int64_t,
                       float scale, uint16_t* out) override {
    paged_attention_reference(q, tokens, heads, d, k_cache, v_cache, block_size, block_tables,
                              max_blocks_per_seq, seq_of_token, context_lens, scale, out);
  }
  void cross_attention(const uint16_t* q, int64_t rows, int64_t heads, int64_t d,
                       const int32_t* group_of_row, const uint16_t* const* k_groups,
                       const uint16_t* const* v_groups, const int32_t* group_len, int64_t,
                       float scale, uint16_t* out) override {
    cross_attention_reference(q, rows, heads, d, group_of_row, k_groups, v_groups, group_len, scale,
                              out);
  }
  void synchronize() override {}
};

}  // namespace

std::unique_ptr<DecoderOps> make_host_ops() { return std::make_unique<HostOps>(); }

}  // namespace flamingo::kernels::cuda
