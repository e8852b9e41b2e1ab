#!/usr/bin/env bash
# Installs everything flamingo-serve needs on a fresh Debian 12 machine (even a minimal one
# without a compiler) and builds sentencepiece 0.1.97 from Debian's source package as a
# static library without its bundled protobuf (see docs/BUILD.md for why).
#
# Usage: scripts/install-deps.sh [--no-server] [--no-test-tools]
#   --no-server      skip gRPC/Protobuf/Python client packages (model, kernels and CLI only)
#   --no-test-tools  skip what only the tests use: clang (the fuzz targets), openssl (the TLS
#                    test's certificates), Node.js/npm and the openai SDK (the HTTP API's SDK
#                    test); for builds without tests
# Environment: DEPS_PREFIX (default: <repo>/.deps) receives the sentencepiece build.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
prefix=${DEPS_PREFIX:-$here/.deps}
with_server=1
with_test_tools=1
for arg in "$@"; do
  case "$arg" in
    --no-server) with_server=0 ;;
    --no-test-tools) with_test_tools=0 ;;
    -h | --help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "install-deps.sh: unknown argument '$arg' (see --help)" >&2; exit 2 ;;
  esac
done

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi
apt_get() { "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "$@"; }

packages=(
  build-essential cmake ninja-build pkg-config ca-certificates git dpkg-dev
  libtorch-dev libopenblas0-openmp libopenblas-openmp-dev libprotobuf-dev protobuf-compiler
  libspdlog-dev libgtest-dev libgmock-dev libbenchmark-dev nlohmann-json3-dev
  libpng-dev libturbojpeg0-dev libjpeg62-turbo-dev libxxhash-dev
  python3 python3-numpy python3-torch python3-pil sentencepiece python3-sentencepiece
  clang-format ccache
)
if [ "$with_test_tools" = 1 ]; then
  packages+=(clang libclang-rt-14-dev)  # libFuzzer and the sanitizer runtimes (fuzz/)
  packages+=(openssl)                    # the TLS test makes its certificates with it
fi
if [ "$with_server" = 1 ]; then
  packages+=(libgrpc++-dev protobuf-compiler-grpc libcpp-httplib-dev prometheus-cpp-dev python3-grpcio python3-protobuf python3-matplotlib)
  # Node.js and npm for the openai-SDK test of the HTTP API (tests/clients/openai_sdk). A
  # Node.js from elsewhere (nodesource's bundles npm and conflicts with Debian's npm) is kept.
  if [ "$with_test_tools" = 1 ] && { ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; }; then
    packages+=(nodejs npm)
  fi
fi

# Debian 12 keeps its sources in deb822 form; enable deb-src for `apt-get source`.
src_list=/etc/apt/sources.list.d/flamingo-deb-src.sources
if [ ! -f "$src_list" ] && [ -f /etc/apt/sources.list.d/debian.sources ]; then
  sed -e 's/^Types:.*/Types: deb-src/' /etc/apt/sources.list.d/debian.sources |
    "${sudo_cmd[@]}" tee "$src_list" >/dev/null
elif [ ! -f "$src_list" ] && [ -f /etc/apt/sources.list ] &&
  ! grep -q '^deb-src' /etc/apt/sources.list; then
  grep '^deb ' /etc/apt/sources.list | sed 's/^deb /deb-src /' |
    "${sudo_cmd[@]}" tee /etc/apt/sources.list.d/flamingo-deb-src.list >/dev/null
fi

need_install=0
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need_install=1
done
if [ "$need_install" = 1 ] || [ ! -f "$prefix/lib/libsentencepiece.a" ]; then
  apt_get update -q
fi
if [ "$need_install" = 1 ]; then
  apt_get install -y -q --no-install-recommends "${packages[@]}"
fi

# BLAS: OpenBLAS's OpenMP variant, pinned. Its pthread variant starts a pool of threads (with
# every signal unblocked, before main()) that fight LibTorch's own OpenMP threads for the cores
# and take the server's SIGTERM/SIGINT (issue 15). It comes in through python3-matplotlib ->
# python3-fonttools -> python3-scipy -> python3-pythran -> libopenblas-dev, whose first choice
# is libopenblas-pthread-dev unless an OpenMP -dev is installed in the same apt-get call (as
# above), and then wins update-alternatives (priority 100 over 95). The manual selections keep
# the OpenMP libraries whichever variants are, or later get, installed.
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -dumpmachine)
for lib in libblas.so.3 liblapack.so.3 libopenblas.so.0; do
  name=$lib-$multiarch
  target=/usr/lib/$multiarch/openblas-openmp/$lib
  if [ ! -e "$target" ]; then
    echo "install-deps.sh: $target is missing (package libopenblas0-openmp)" >&2
    exit 1
  fi
  query=$(update-alternatives --query "$name" 2>/dev/null || true)
  if ! grep -qx 'Status: manual' <<<"$query" || ! grep -qxF "Value: $target" <<<"$query"; then
    "${sudo_cmd[@]}" update-alternatives --set "$name" "$target"
  fi
done

# sentencepiece: Debian's libsentencepiece0 embeds protobuf-lite 3.14 and aborts next to
# libprotobuf 3.21 (gRPC, LibTorch). Rebuild the same version statically against nothing.
if [ ! -f "$prefix/lib/libsentencepiece.a" ]; then
  work=$(mktemp -d)
  (
    cd "$work"
    apt-get source -q sentencepiece >/dev/null
    src=$(find . -maxdepth 1 -type d -name 'sentencepiece-*' | head -n 1)
    # Debian's patches drop the static target and pin the bundled protobuf-lite headers:
    # restore the target, remove the bundled copy, include the system protobuf instead.
    (cd "$src" && patch -R -p1 -s <debian/patches/disable-static-library.patch)
    rm -rf "$src/third_party/protobuf-lite"
    sed -i 's|"third_party/protobuf-lite/google/protobuf/message_lite.h"|<google/protobuf/message_lite.h>|' \
      "$src/src/init.h"
    cmake -S "$src" -B build -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DSPM_USE_BUILTIN_PROTOBUF=OFF -DSPM_ENABLE_SHARED=OFF \
      -DSPM_ENABLE_TCMALLOC=OFF -DCMAKE_POSITION_INDEPENDENT_CODE=ON \
      -DCMAKE_INSTALL_PREFIX="$prefix" >/dev/null
    cmake --build build --target sentencepiece-static >/dev/null
    mkdir -p "$prefix/lib" "$prefix/include"
    cp build/src/libsentencepiece.a "$prefix/lib/"
    cp "$src/src/sentencepiece_processor.h" "$prefix/include/"
  )
  rm -rf "$work"
  echo "install-deps: sentencepiece (static, no bundled protobuf) in $prefix"
fi
# The official openai JavaScript SDK, pinned by tests/clients/openai_sdk/package-lock.json, from
# the npm registry (the one download besides Debian's archive). Without it that test is skipped.
sdk=$here/tests/clients/openai_sdk
if [ "$with_server" = 1 ] && [ "$with_test_tools" = 1 ] && [ ! -d "$sdk/node_modules/openai" ]; then
  if (cd "$sdk" && npm ci --no-audit --no-fund --loglevel=error); then
    echo "install-deps: openai SDK for the HTTP API test in $sdk/node_modules"
  else
    echo "install-deps: WARNING: 'npm ci' in $sdk failed (no access to the npm registry?):" \
      "the openai SDK test will be skipped" >&2
  fi
fi
echo "install-deps: done"
