// The fixture of the CUDA kernels' gpu tests: skipped, with the CUDA runtime's reason, where
// no device answers (CPU machines, a missing driver).
#pragma once

#include <cuda_runtime.h>
#include <gtest/gtest.h>

namespace flamingo::kernels::cuda::testing {

class GpuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    int devices = 0;
    const cudaError_t e = cudaGetDeviceCount(&devices);
    if (e != cudaSuccess || devices == 0) {
      GTEST_SKIP() << "no CUDA device: "
                   << (e != cudaSuccess ? cudaGetErrorString(e) : "none found");
    }
  }
};

}  // namespace flamingo::kernels::cuda::testing
