// Helpers of the kernel tests: restoring the kernel pool's size, and bit-for-bit tensor
// equality.
#pragma once

#include <ATen/ATen.h>

#include <cstring>

#include "kernels/thread_pool.h"

namespace flamingo::kernels::testing {

// Restores the kernel pool's size on scope exit (tests change it with set_kernel_threads).
class PoolGuard {
 public:
  PoolGuard() : saved_(kernel_threads()) {}
  ~PoolGuard() { set_kernel_threads(saved_); }
  PoolGuard(const PoolGuard&) = delete;
  PoolGuard& operator=(const PoolGuard&) = delete;

 private:
  int saved_;
};

// Same sizes, dtype and bytes.
inline bool bit_equal(const at::Tensor& a, const at::Tensor& b) {
  const at::Tensor ac = a.contiguous(), bc = b.contiguous();
  return ac.sizes() == bc.sizes() && ac.scalar_type() == bc.scalar_type() &&
         std::memcmp(ac.data_ptr(), bc.data_ptr(), ac.nbytes()) == 0;
}

}  // namespace flamingo::kernels::testing
