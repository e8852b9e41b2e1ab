#!/usr/bin/env bash
# Configures and builds flamingo-serve into build/ (Release, Ninja, all cores).
# Extra arguments go to CMake's configure step, e.g. -DFLAMINGO_BUILD_SERVER=OFF.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cmake -S "$here" -B "$here/build" -G Ninja -DCMAKE_BUILD_TYPE=Release "$@"
cmake --build "$here/build"
