#include "kernels/cpu_isa.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>

namespace flamingo::kernels {
namespace {

// Linux keeps the AMX tile data (8 KB per thread) out of a process's saved state until the
// process asks for it; without it the first tile instruction raises SIGILL.
bool amx_permitted() {
#ifdef __linux__
  constexpr long kArchReqXcompPerm = 0x1023;
  constexpr long kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
#else
  return false;
#endif
}

Isa probe() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("fma")) {
    if (!__builtin_cpu_supports("avx512vnni")) return Isa::kAvx512;
    if (!__builtin_cpu_supports("avx512bf16")) return Isa::kAvx512Vnni;
    if (__builtin_cpu_supports("amx-tile") && __builtin_cpu_supports("amx-bf16") &&
        amx_permitted()) {
      return Isa::kAmx;
    }
    return Isa::kAvx512Bf16;
  }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::kAvx2;
  return Isa::kScalar;
}

Isa from_environment() {
  const char* env = std::getenv("FLAMINGO_KERNEL_ISA");
  if (env == nullptr || *env == '\0') return cpu_isa();
  try {
    return std::min(parse_isa(env), cpu_isa());
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(std::string("FLAMINGO_KERNEL_ISA: ") + e.what());
  }
}

constexpr int kNotForced = -1;
std::atomic<int> forced{kNotForced};

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kScalar:
      return "scalar";
    case Isa::kAvx2:
      return "avx2";
    case Isa::kAvx512:
      return "avx512";
    case Isa::kAvx512Vnni:
      return "avx512_vnni";
    case Isa::kAvx512Bf16:
      return "avx512_bf16";
    case Isa::kAmx:
      return "amx";
  }
  return "?";
}

Isa parse_isa(const std::string& name) {
  if (name == "scalar") return Isa::kScalar;
  if (name == "avx2") return Isa::kAvx2;
  if (name == "avx512") return Isa::kAvx512;
  if (name == "avx512_vnni") return Isa::kAvx512Vnni;
  if (name == "avx512_bf16") return Isa::kAvx512Bf16;
  if (name == "amx") return Isa::kAmx;
  throw std::invalid_argument(
      "expected scalar, avx2, avx512, avx512_vnni, avx512_bf16 or amx, found '" + name + "'");
}

Isa cpu_isa() {
  static const Isa isa = probe();
  return isa;
}

Isa active_isa() {
  const int f = forced.load(std::memory_order_relaxed);
  if (f != kNotForced) return static_cast<Isa>(f);
  static const Isa isa = from_environment();
  return isa;
}

void set_forced_isa(Isa isa) {
  forced.store(static_cast<int>(std::min(isa, cpu_isa())), std::memory_order_relaxed);
}

void reset_forced_isa() { forced.store(kNotForced, std::memory_order_relaxed); }

std::string cpu_flags_summary() {
  static const std::set<std::string> wanted = {
      "avx2",        "fma",      "avx512f",  "avx512bw", "avx512vl", "avx512_bf16",
      "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8", "f16c",     "avx512_fp16"};
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("flags", 0) != 0) continue;
    std::istringstream flags(line.substr(line.find(':') + 1));
    std::string f, out;
    while (flags >> f) {
      if (wanted.count(f)) out += (out.empty() ? "" : " ") + f;
    }
    return out;
  }
  return "";
}

}  // namespace flamingo::kernels
