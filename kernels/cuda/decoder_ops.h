// The operations a decoder step is made of, on one kind of memory (issue 13): DeviceOps runs the
// CUDA kernels on GPU memory; HostOps runs their CPU references on host memory, the same bits
// by construction. kernels/cuda/decoder.h is written once against this interface, so the
// whole step can be checked on a CPU (against the LibTorch model) and its GPU run compared
// with the host run bit for bit. Pointers below live in the ops' memory; all data bfloat16
// bits unless named float. Not thread-safe (one stream).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace flamingo::kernels::cuda {

class DecoderOps {
 public:
  virtual ~DecoderOps() = default;
  virtual const char* name() const = 0;  // "host" or "device"

  virtual void* alloc(int64_t bytes) = 0;  // zero-filled; throws std::runtime_error
  virtual void release(void* p) = 0;
  virtual void zero(void* p, int64_t bytes) = 0;
  virtual void upload(void* dst, const void* host_src, int64_t bytes) = 0;
  virtual void download(void* host_dst, const void* src, int64_t bytes) = 0;

  // y [m, n] float32 = x [m, k] W^T (kernels/cuda/skinny_product.h).
  virtual void product(const uint16_t* x, int64_t m, const uint16_t* w, int64_t n, int64_t k,
                       float* y) = 0;
  virtual void to_bf16(const float* x, uint16_t* y, int64_t n) = 0;
  // kernels/cuda/rms_norm_residual.h (delta nullptr: no residual add).
  virtual void rms_norm(uint16_t* h, const uint16_t* delta, const uint16_t* weight, uint16_t* y,
                        int64_t rows, int64_t d, float eps) = 0;
  virtual void rotary(const uint16_t* x, const uint16_t* cos, const uint16_t* sin, uint16_t* y,
                      int64_t tokens, int64_t heads, int64_t d) = 0;
  virtual void swiglu(const uint16_t* g, const uint16_t* u, uint16_t* y, int64_t n) = 0;
  virtual void gather_rows(const uint16_t* table, int64_t width, const int32_t* index, int64_t rows,
                           uint16_t* out) = 0;
  virtual void scatter_rows(const uint16_t* src, int64_t width, const int32_t* index, int64_t rows,
                            uint16_t* table) = 0;
  virtual void gated_add(uint16_t* h, const uint16_t* gate, int64_t gate_len, const uint16_t* y,
                         int64_t rows, int64_t d) = 0;
  // kernels/cuda/attention.h; max_keys sizes the GPU launch (the host ignores it).
  virtual void paged_attention(const uint16_t* q, int64_t tokens, int64_t heads, int64_t d,
                               const uint16_t* k_cache, const uint16_t* v_cache, int64_t block_size,
                               const int32_t* block_tables, int64_t max_blocks_per_seq,
                               const int32_t* seq_of_token, const int32_t* context_lens,
                               int64_t max_keys, float scale, uint16_t* out) = 0;
  virtual void cross_attention(const uint16_t* q, int64_t rows, int64_t heads, int64_t d,
                               const int32_t* group_of_row, const uint16_t* const* k_groups,
                               const uint16_t* const* v_groups, const int32_t* group_len,
                               int64_t max_keys, float scale, uint16_t* out) = 0;
  virtual void synchronize() = 0;
};

std::unique_ptr<DecoderOps> make_host_ops();
// The CUDA kernels on the current device and `stream` (a cudaStream_t; nullptr: the default).
std::unique_ptr<DecoderOps> make_device_ops(void* stream);
// Whether a CUDA device answers; when not, `why` (if given) says why ("no CUDA device: ...").
bool device_available(std::string* why);

}  // namespace flamingo::kernels::cuda
