#!/usr/bin/env bash
# The GPU check (issue 13, docs/GPU.md): builds the CUDA kernels and their tests on their own
# (gpu/CMakeLists.txt: CUDA + GoogleTest from .gpu-deps, scripts/gpu-deps.sh), runs every test
# of that project (label gpu: the kernels against their CPU references bit for bit; label
# unit: the references themselves), times the kernels (gpu/skinny_bench.cu,
# gpu/attention_bench.cu) and the 9b-shaped decode step made of them (gpu/decoder_bench.cpp),
# and writes the logs, a JUnit XML and the timings (JSON) into OUT_DIR.
# On a machine without a GPU the gpu tests are skipped with the reason, so the script doubles as
# its own dry run; it exits non-zero if anything fails to build or a test fails.
#   scripts/gpu-check.sh OUT_DIR
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
[ $# -eq 1 ] || { echo "usage: scripts/gpu-check.sh OUT_DIR" >&2; exit 2; }
out=$(mkdir -p "$1" && cd "$1" && pwd)
build=$here/build-gpu
nvcc=${CUDACXX:-/usr/local/cuda/bin/nvcc}
{
  echo "gpu-check: $(date -u +%FT%TZ), commit $(git -C "$here" rev-parse --short HEAD 2>/dev/null || echo '?')"
  "$nvcc" --version | tail -1
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  else
    echo "nvidia-smi: not found (no NVIDIA driver here: the gpu tests will be skipped)"
  fi
} | tee "$out/machine.txt"
gtest_root=$here/.gpu-deps
[ -d "$gtest_root" ] || gtest_root=/usr
cmake -S "$here/gpu" -B "$build" -G Ninja -DCMAKE_CUDA_COMPILER="$nvcc" \
  -DGTEST_ROOT="$gtest_root" >"$out/configure.log" 2>&1 || { tail -30 "$out/configure.log"; exit 1; }
cmake --build "$build" >"$out/build.log" 2>&1 || { tail -40 "$out/build.log"; exit 1; }
set +e
ctest --test-dir "$build" --output-on-failure --output-junit "$out/tests.xml" >"$out/tests.log" 2>&1
rc=$?
set -e
tail -25 "$out/tests.log"
# Timing (exit 77: no device, nothing timed).
for bench in skinny_bench attention_bench decoder_bench; do
  set +e
  "$build/bin/$bench" "$out/$bench.json" 2>&1 | tee "$out/$bench.txt"
  bench_rc=${PIPESTATUS[0]}
  set -e
  if [ "$bench_rc" -ne 0 ] && [ "$bench_rc" -ne 77 ]; then rc=$bench_rc; fi
done
exit $rc
