// Row-wise steps of the decoder that LibTorch runs as several small ops each (RMSNorm: five
// ops and their tensors per call, rotary embedding: six, SwiGLU's gating: two), fused into one
// pass over each row (AVX2 where the CPU has it, the portable loop's bits), rows split across
// the kernel pool when there are many. Each row's result depends on that row only
// (batch-invariant, thread-count-invariant). Thread-safe.
#pragma once

#include <ATen/ATen.h>

namespace flamingo::kernels {

// LlamaRMSNorm over the last dim of x (float32 or bfloat16, contiguous rows): y = w * cast(x *
// rsqrt(mean(x^2) + eps)), w [D] in x's dtype. As the LibTorch composition (x in float32,
// x * r rounded to x's dtype, then the product with w rounded), except that mean(x^2) is summed
// in float64 and rounded once, where LibTorch sums in float32: the variance can differ in its
// last bit. Throws c10::Error for other dtypes or shapes.
at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& w, double eps);

// Rotary embedding: x [T, H, D] * cos [T, 1, D] + rotate_half(x) * sin [T, 1, D] (cos and sin
// [T, D] in x's dtype, D even; rotate_half(x) = [-x[D/2:], x[:D/2]]), each product and the sum
// rounded to x's dtype as LibTorch's ops do: the same bits as that composition.
at::Tensor rotary(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);

// SwiGLU's gating: silu(gate) * up = gate / (1 + exp(-gate)) * up, elementwise, gate and up
// of one shape and dtype (float32 or bfloat16), silu rounded to the dtype before the product
// as LibTorch's two ops do. exp is this file's own (Cody-Waite reduction and a degree-6
// polynomial, within 2 units in the last place of float32; plain C++ the compiler vectorizes, so
// every CPU gives the same bits), where LibTorch calls SLEEF's: float32 results can differ from
// LibTorch's in the last bits. For bfloat16, silu is computed in float32 and rounded once (as
// PyTorch 2's kernel does), where Debian's LibTorch 1.13 rounds its exp, sum and quotient to
// bfloat16 one by one: closer to the exact value, and one unit apart from LibTorch's result in
// about a quarter of the elements.
at::Tensor swiglu(const at::Tensor& gate, const at::Tensor& up);

}  // namespace flamingo::kernels
