// Which vector instruction set the CPU kernels run: probed once from the CPU's flags, and
// lowered (never raised) by the environment variable
// FLAMINGO_KERNEL_ISA=scalar|avx2|avx512|avx512_vnni|avx512_bf16|amx so that every path can be
// tested on a CPU that has a higher one. Torch-free; thread-safe (the probe runs once;
// set_forced_isa is for tests and must not race with running kernels).
#pragma once

#include <string>

namespace flamingo::kernels {

enum class Isa {
  kScalar = 0,  // portable C++ (std::fma, so its bits equal the vector paths')
  kAvx2 = 1,    // AVX2 + FMA
  kAvx512 = 2,  // AVX-512 F + BW + VL (+ FMA)
  // The same + AVX-512 VNNI (vpdpbusd: int8 dot products); float32 / bfloat16 weights run the
  // kAvx512 code, int8 weights their own.
  kAvx512Vnni = 3,
  // The same + AVX-512 BF16 (vdpbf16ps): bfloat16 weights with bfloat16 activations run
  // kernels/bf16_dot_product (its own summation order, see there); everything else runs the
  // kAvx512Vnni code. Every CPU with AVX-512 BF16 has VNNI (Cooper Lake, Sapphire Rapids and
  // later, AMD Zen 4 and later).
  kAvx512Bf16 = 4,
  // The same + AMX-BF16 tiles, which the OS let this process use (Linux asks for them with
  // arch_prctl(ARCH_REQ_XCOMP_PERM) once, in the probe): bfloat16 weights with bfloat16
  // activations run kernels/amx_product instead (its own summation order, see there).
  kAmx = 5,
};

const char* isa_name(Isa isa);
// Parses "scalar", "avx2", "avx512", "avx512_vnni", "avx512_bf16", "amx"; throws
// std::invalid_argument naming the value.
Isa parse_isa(const std::string& name);

// The best path this CPU supports.
Isa cpu_isa();
// The path kernels use: cpu_isa(), lowered by FLAMINGO_KERNEL_ISA (read once) or by
// set_forced_isa. Asking for more than the CPU has gives what the CPU has.
Isa active_isa();
// Tests: run kernels on `isa` (clamped to cpu_isa()) until reset_forced_isa().
void set_forced_isa(Isa isa);
void reset_forced_isa();

// The CPU's flags that matter for the kernels, e.g. "avx2 fma avx512f avx512bw avx512vl
// avx512_bf16 avx512_vnni amx_bf16" (for logs and benchmark reports).
std::string cpu_flags_summary();

}  // namespace flamingo::kernels
