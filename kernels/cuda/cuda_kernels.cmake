# The CUDA kernels (torch-free) and their tests, shared by the main build (CMakeLists.txt,
# tests/CMakeLists.txt) and the standalone GPU project (gpu/CMakeLists.txt) that
# scripts/gpu-check.sh builds on the GPU machine. Needs CUDA enabled and FLAMINGO_SOURCE set.
add_library(flamingo_cuda_kernels STATIC
  ${FLAMINGO_SOURCE}/kernels/cuda/attention_reference.cpp
  ${FLAMINGO_SOURCE}/kernels/cuda/cross_attention.cu
  ${FLAMINGO_SOURCE}/kernels/cuda/device_ops.cpp
  ${FLAMINGO_SOURCE}/kernels/cuda/elementwise.cu
  ${FLAMINGO_SOURCE}/kernels/cuda/elementwise_reference.cpp
  ${FLAMINGO_SOURCE}/kernels/cuda/host_ops.cpp
  ${FLAMINGO_SOURCE}/kernels/cuda/paged_attention.cu
  ${FLAMINGO_SOURCE}/kernels/cuda/rms_norm_reference.cpp
  ${FLAMINGO_SOURCE}/kernels/cuda/rms_norm_residual.cu
  ${FLAMINGO_SOURCE}/kernels/cuda/rotary.cu
  ${FLAMINGO_SOURCE}/kernels/cuda/row_ops_reference.cpp
  ${FLAMINGO_SOURCE}/kernels/cuda/skinny_plan.cpp
  ${FLAMINGO_SOURCE}/kernels/cuda/skinny_product.cu
  ${FLAMINGO_SOURCE}/kernels/cuda/swiglu.cu
)
target_include_directories(flamingo_cuda_kernels PUBLIC ${FLAMINGO_SOURCE})
target_link_libraries(flamingo_cuda_kernels PUBLIC CUDA::cudart)
# The text decoder made of these kernels' ops (model/cuda_decoder.h; torch-free). The tests
# below link it (it brings the kernels).
add_library(flamingo_cuda_decoder STATIC ${FLAMINGO_SOURCE}/model/cuda_decoder.cpp)
target_link_libraries(flamingo_cuda_decoder PUBLIC flamingo_cuda_kernels)
# No multiply and add contracted into an FMA unless the source asks for one (__fmaf_rn): the
# kernels' plain arithmetic rounds as the CPU references' does (kernels/exp_float.h).
target_compile_options(flamingo_cuda_kernels PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-fmad=false>)

# name label source (under tests/): the CPU-side tests run everywhere, the gpu ones skip,
# saying why, where no device answers.
set(FLAMINGO_CUDA_TESTS
  skinny_plan_test unit kernels/cuda/skinny_plan_test.cpp
  skinny_product_gpu_test gpu kernels/cuda/skinny_product_gpu_test.cpp
  rms_norm_reference_test unit kernels/cuda/rms_norm_reference_test.cpp
  rms_norm_residual_gpu_test gpu kernels/cuda/rms_norm_residual_gpu_test.cpp
  attention_reference_test unit kernels/cuda/attention_reference_test.cpp
  paged_attention_gpu_test gpu kernels/cuda/paged_attention_gpu_test.cpp
  cross_attention_gpu_test gpu kernels/cuda/cross_attention_gpu_test.cpp
  swiglu_gpu_test gpu kernels/cuda/swiglu_gpu_test.cpp
  rotary_gpu_test gpu kernels/cuda/rotary_gpu_test.cpp
  elementwise_reference_test unit kernels/cuda/elementwise_reference_test.cpp
  elementwise_gpu_test gpu kernels/cuda/elementwise_gpu_test.cpp
  cuda_decoder_gpu_test gpu model/cuda_decoder_gpu_test.cpp
)
