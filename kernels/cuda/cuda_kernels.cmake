# The CUDA kernels (torch-free) and their tests, shared by the main build (CMakeLists.txt,
# tests/CMakeLists.txt) and the standalone GPU project (gpu/CMakeLists.txt) that
# scripts/gpu-check.sh builds on the GPU machine. Needs CUDA enabled and FLAMINGO_SOURCE set.
add_library(flamingo_cuda_kernels STATIC
  ${FLAMINGO_SOURCE}/kernels/cuda/rms_norm_reference.cpp
  ${FLAMINGO_SOURCE}/kernels/cuda/rms_norm_residual.cu
  ${FLAMINGO_SOURCE}/kernels/cuda/skinny_plan.cpp
  ${FLAMINGO_SOURCE}/kernels/cuda/skinny_product.cu
)
target_include_directories(flamingo_cuda_kernels PUBLIC ${FLAMINGO_SOURCE})
target_link_libraries(flamingo_cuda_kernels PUBLIC CUDA::cudart)

# name label source (under tests/): the CPU-side tests run everywhere, the gpu ones skip,
# saying why, where no device answers.
set(FLAMINGO_CUDA_TESTS
  skinny_plan_test unit kernels/cuda/skinny_plan_test.cpp
  skinny_product_gpu_test gpu kernels/cuda/skinny_product_gpu_test.cpp
  rms_norm_reference_test unit kernels/cuda/rms_norm_reference_test.cpp
  rms_norm_residual_gpu_test gpu kernels/cuda/rms_norm_residual_gpu_test.cpp
)
