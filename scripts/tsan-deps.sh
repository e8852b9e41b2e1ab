#!/usr/bin/env bash
# Builds the libraries that order flamingo-server's threads, Abseil, gRPC (C core and C++) and
# cpp-httplib, from Debian 12's own source packages with -fsanitize=thread (GCC), into a prefix,
# so that `scripts/sanitizer-check.sh thread --set server` can check the server itself
# (docs/RELIABILITY.md, "ThreadSanitizer and the server"):
#
#   scripts/tsan-deps.sh [--prefix DIR] [--src DIR]
#
# Defaults: prefix .tsan-deps/ and sources .tsan-deps-src/ next to build/ (both ignored by git).
# Needs deb-src entries for Debian 12 (scripts/install-deps.sh adds them) and the server's
# packages (install-deps.sh); installs what gRPC's build needs beyond them (libprotoc-dev,
# libssl-dev, libc-ares-dev, libre2-dev, zlib1g-dev, libbrotli-dev) with apt-get. Protobuf,
# OpenSSL, c-ares, RE2 and zlib stay Debian's (uninstrumented): they order no threads of ours.
# Takes about 15 minutes on 2 cores (gRPC 13 of them; 530 MB of sources and objects, a 95 MB
# prefix); a finished step is not redone (delete its .NAME.done stamp in the prefix to redo).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
prefix="$here/.tsan-deps"
src="$here/.tsan-deps-src"
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix=${2:?--prefix needs a value}; shift 2 ;;
    --src) src=${2:?--src needs a value}; shift 2 ;;
    -h | --help) sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "tsan-deps: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
mkdir -p "$prefix" "$src"
prefix=$(cd "$prefix" && pwd)
jobs=$(nproc)
need=()
for p in libprotoc-dev libssl-dev libc-ares-dev libre2-dev zlib1g-dev libbrotli-dev dpkg-dev; do
  dpkg-query -W -f '${Status}' "$p" 2> /dev/null | grep -q 'ok installed' || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "tsan-deps: installing ${need[*]}" >&2
  sudo_cmd=()
  [ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" > /dev/null
fi
flags="-fsanitize=thread -fno-omit-frame-pointer -O2 -g1"
export CFLAGS="$flags" CXXFLAGS="$flags" LDFLAGS="-fsanitize=thread"

# The exact versions Debian ships, so headers and ABI match what the normal build uses.
fetch() {  # fetch SOURCE-PACKAGE BINARY-PACKAGE: unpacks the source of the installed version
  local version
  version=$(dpkg-query -W -f '${Version}' "$2")
  version=$(echo "$version" | sed 's/+b[0-9]*$//')  # a binNMU's source is the plain version
  if ! ls -d "$src/$1"-*/ > /dev/null 2>&1; then
    echo "tsan-deps: fetching $1 $version" >&2
    (cd "$src" && apt-get source -q "$1=$version" > "$src/$1.fetch.log" 2>&1) \
      || { cat "$src/$1.fetch.log" >&2; exit 1; }
  fi
  ls -d "$src/$1"-*/ | head -1
}

step() {  # step NAME: true when NAME still has to be built
  [ ! -e "$prefix/.$1.done" ]
}

# cmake_project NAME SOURCE-DIR CMAKE-ARGS...: configures, builds and installs a CMake project
# into the prefix (shared libraries that find each other through $ORIGIN), its log in
# $src/NAME.log (the tail is shown when a step fails), then stamps NAME done.
cmake_project() {
  local name=$1 dir=$2 log="$src/$1.log"
  shift 2
  : > "$log"
  { cmake -S "$dir" -B "$src/build-$name" -G Ninja -DCMAKE_BUILD_TYPE=None \
      -DBUILD_SHARED_LIBS=ON -DCMAKE_CXX_STANDARD=17 -DCMAKE_INSTALL_PREFIX="$prefix" \
      -DCMAKE_INSTALL_LIBDIR=lib -DCMAKE_INSTALL_RPATH='$ORIGIN' "$@" &&
    cmake --build "$src/build-$name" -j "$jobs" &&
    cmake --install "$src/build-$name"; } >> "$log" 2>&1 || { tail -40 "$log" >&2; exit 1; }
  touch "$prefix/.$name.done"
}

if step abseil; then
  dir=$(fetch abseil libabsl-dev)
  echo "tsan-deps: building Abseil (about a minute)" >&2
  cmake_project abseil "$dir" -DBUILD_TESTING=OFF
fi

if step grpc; then
  dir=$(fetch grpc libgrpc++-dev)
  echo "tsan-deps: building gRPC (about 13 minutes on 2 cores)" >&2
  cmake_project grpc "$dir" -DCMAKE_PREFIX_PATH="$prefix" \
    -DgRPC_ABSL_PROVIDER=package -DgRPC_CARES_PROVIDER=package \
    -DgRPC_PROTOBUF_PROVIDER=package -DgRPC_RE2_PROVIDER=package \
    -DgRPC_SSL_PROVIDER=package -DgRPC_ZLIB_PROVIDER=package \
    -DgRPC_BACKWARDS_COMPATIBILITY_MODE=OFF -DgRPC_BUILD_TESTS=OFF \
    -DgRPC_BUILD_CSHARP_EXT=OFF -DgRPC_BUILD_GRPC_CSHARP_PLUGIN=OFF \
    -DgRPC_BUILD_GRPC_NODE_PLUGIN=OFF -DgRPC_BUILD_GRPC_OBJECTIVE_C_PLUGIN=OFF \
    -DgRPC_BUILD_GRPC_PHP_PLUGIN=OFF -DgRPC_BUILD_GRPC_PYTHON_PLUGIN=OFF \
    -DgRPC_BUILD_GRPC_RUBY_PLUGIN=OFF -DgRPC_INSTALL_CMAKEDIR=lib/cmake/grpc
fi

if step httplib; then
  dir=$(fetch cpp-httplib libcpp-httplib-dev)
  echo "tsan-deps: building cpp-httplib" >&2
  # Debian's build: the header split into httplib.h + httplib.cc, these defines.
  defines="-DCPPHTTPLIB_OPENSSL_SUPPORT -DCPPHTTPLIB_ZLIB_SUPPORT -DCPPHTTPLIB_BROTLI_SUPPORT"
  mkdir -p "$src/build-httplib" "$prefix/include" "$prefix/lib/pkgconfig"
  /usr/bin/python3 "${dir%/}/split.py" --out "$src/build-httplib" > "$src/httplib.log" 2>&1 \
    || { tail -40 "$src/httplib.log" >&2; exit 1; }
  g++ -std=c++17 -shared -fPIC $flags -DCPPHTTPLIB_USE_POLL $defines \
    -I "$src/build-httplib" "$src/build-httplib/httplib.cc" \
    -o "$prefix/lib/libcpp-httplib.so" -fsanitize=thread -Wl,-rpath,'$ORIGIN' \
    -lssl -lcrypto -lz -lbrotlicommon -lbrotlidec -lbrotlienc -pthread >> "$src/httplib.log" 2>&1 \
    || { tail -40 "$src/httplib.log" >&2; exit 1; }
  cp "$src/build-httplib/httplib.h" "$prefix/include/httplib.h"
  cat > "$prefix/lib/pkgconfig/cpp-httplib.pc" << EOF
prefix=$prefix
includedir=\${prefix}/include
libdir=\${prefix}/lib

Name: cpp-httplib
Description: cpp-httplib built with -fsanitize=thread (scripts/tsan-deps.sh)
Version: $(dpkg-query -W -f '${Version}' libcpp-httplib-dev | sed 's/+.*//')
Libs: -L\${libdir} -lcpp-httplib -Wl,-rpath,\${libdir}
Libs.private: -pthread
Cflags: -I\${includedir} $defines
EOF
  touch "$prefix/.httplib.done"
fi
echo "tsan-deps: done: $prefix (scripts/sanitizer-check.sh thread --set server uses it)" >&2
