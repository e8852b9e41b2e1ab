#!/usr/bin/env bash
# Copies what gpu/CMakeLists.txt needs besides CUDA, CMake and ninja (the GPU machine has no
# GoogleTest) into .gpu-deps/ (git-ignored, ~2 MB), to travel with the working tree to the GPU
# machine (the device tool's `carry`). Run on a development machine after
# scripts/install-deps.sh (Debian's libgtest-dev).
#   scripts/gpu-deps.sh
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=$here/.gpu-deps
lib=/usr/lib/x86_64-linux-gnu
for f in /usr/include/gtest/gtest.h $lib/libgtest.a $lib/libgtest_main.a; do
  [ -e "$f" ] || { echo "gpu-deps.sh: $f missing (apt-get install libgtest-dev)" >&2; exit 1; }
done
rm -rf "$out"
mkdir -p "$out/include" "$out/lib"
cp -r /usr/include/gtest "$out/include/"
cp $lib/libgtest.a $lib/libgtest_main.a "$out/lib/"
echo "gpu-deps.sh: GoogleTest in $out ($(du -sh "$out" | cut -f1))"
