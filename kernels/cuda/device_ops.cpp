// DecoderOps on GPU memory through the CUDA kernels (kernels/cuda/decoder_ops.h).
#include <cuda_runtime.h>

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

void check(cudaError_t e, const std::string& what) {
  if (e != cudaSuccess) {
    throw std::runtime_error("device ops: " + what + ": " + cudaGetErrorName(e) + ": " +
                             cudaGetErrorString(e));
  }
}

class DeviceOps final : public DecoderOps {
 public:
  explicit DeviceOps(void* stream) : s_(stream) {}
  const char* name() const override { return "device"; }
  void* alloc(int64_t bytes) override {
    void* p = nullptr;
    check(cudaMalloc(&p, static_cast<size_t>(bytes > 0 ? bytes : 1)),
          "cudaMalloc of " + std::to_string(bytes) + " bytes");
    zero(p, bytes);
    return p;
  }
  void release(void* p) override { cudaFree(p); }
  void zero(void* p, int64_t bytes) override {
    if (bytes > 0) check(cudaMemsetAsync(p, 0, bytes, stream()), "cudaMemsetAsync");
  }
  void upload(void* dst, const void* src, int64_t bytes) override {
    if (bytes > 0) {
      check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream()), "upload");
      synchronize();  // src may go away when this returns
    }
  }
  void download(void* dst, const void* src, int64_t bytes) override {
    if (bytes > 0) {
      check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream()), "download");
      synchronize();
    }
  }
  void product(const uint16_t* x, int64_t m, const uint16_t* w, int64_t n, int64_t k,
               float* y) override {
    skinny_bf16_product(x, m, w, n, k, y, s_);
  }
  void to_bf16(const float* x, uint16_t* y, int64_t n) override { cuda::to_bf16(x, y, n, s_); }
  void rms_norm(uint16_t* h, const uint16_t* delta, const uint16_t* weight, uint16_t* y,
                int64_t rows, int64_t d, float eps) override {
    rms_norm_residual(h, delta, weight, y, rows, d, eps, s_);
  }
  void rotary(const uint16_t* x, const uint16_t* cos, const uint16_t* sin, uint16_t* y,
              int64_t tokens, int64_t heads, int64_t d) override {
    cuda::rotary(x, cos, sin, y, tokens, heads, d, s_);
  }
  void swiglu(const uint16_t* g, const uint16_t* u, uint16_t* y, int64_t n) override {
    cuda::swiglu(g, u, y, n, s_);
  }
  void gather_rows(const uint16_t* table, int64_t width, const int32_t* index, int64_t rows,
                   uint16_t* out) override {
    cuda::gather_rows(table, width, index, rows, out, s_);
  }
  void scatter_rows(const uint16_t* src, int64_t width, const int32_t* index, int64_t rows,
                    uint16_t* table) override {
    cuda::scatter_rows(src, width, index, rows, table, s_);
  }
  void gated_add(uint16_t* h, const uint16_t* gate, int64_t gate_len, const uint16_t* y,
                 int64_t rows, int64_t d) override {
    cuda::gated_add(h, gate, gate_len, y, rows, d, s_);
  }
  void paged_attention(const uint16_t* q, int64_t tokens, int64_t heads, int64_t d,
                       const uint16_t* k_cache, const uint16_t* v_cache, int64_t block_size,
                       const int32_t* block_tables, int64_t max_blocks_per_seq,
                       const int32_t* seq_of_token, const int32_t* context_lens, int64_t max_keys,
                       float scale, uint16_t* out) override {
    cuda::paged_attention(q, tokens, heads, d, k_cache, v_cache, block_size, block_tables,
                          max_blocks_per_seq, seq_of_token, context_lens, max_keys, scale, out, s_);
  }
  void cross_attention(const uint16_t* q, int64_t rows, int64_t heads, int64_t d,
                       const int32_t* group_of_row, const uint16_t* const* k_groups,
                       const uint16_t* const* v_groups, const int32_t* group_len, int64_t max_keys,
                       float scale, uint16_t* out) override {
    cuda::cross_attention(q, rows, heads, d, group_of_row, k_groups, v_groups, group_len, max_keys,
                          scale, out, s_);
  }
  void synchronize() override { check(cudaStreamSynchronize(stream()), "synchronize"); }

 private:
  cudaStream_t stream() const { return static_cast<cudaStream_t>(s_); }
  void* s_;
};

}  // namespace

std::unique_ptr<DecoderOps> make_device_ops(void* stream) {
  return std::make_unique<DeviceOps>(stream);
}

bool device_available(std::string* why) {
  int devices = 0;
  const cudaError_t e = cudaGetDeviceCount(&devices);
  if (e == cudaSuccess && devices > 0) return true;
  if (why != nullptr) {
    *why = e != cudaSuccess ? std::string("no CUDA device: ") + cudaGetErrorString(e)
                            : std::string("no CUDA device found");
  }
  return false;
}

}  // namespace flamingo::kernels::cuda
