#!/usr/bin/env bash
# Builds a part of the tree with sanitizers in its own folder and runs its tests there
# (docs/RELIABILITY.md, "Sanitizer builds"):
#
#   scripts/sanitizer-check.sh address [--set ci|kernels|engine|server|all|suite] [--dir DIR]
#   scripts/sanitizer-check.sh thread  [--set ci|kernels|engine|server|all|suite] [--dir DIR]
#                                      [--deps DIR]
#
# address: AddressSanitizer + UndefinedBehaviorSanitizer (GCC); thread: ThreadSanitizer.
# Sets of test programs: kernels (the hand-written SIMD products, attention and row ops, also
# under every forced lower ISA path), engine (the engine thread, scheduler, caches, over the
# model with fake and real forwards), server (flamingo-server itself under the sanitizer,
# driven by the end-to-end tests over gRPC and HTTP on loopback), all (the three), suite (the
# whole tree and the whole ctest suite, about 45 minutes on 2 cores under ASan), ci (what
# .ci/run runs, to fit CI's time: kernels under address; under thread the torch-free threaded
# code: the kernels' worker pool, the engine over a fake model, its scheduler and caches).
# thread with server, all or suite links gRPC, Abseil and cpp-httplib built with
# -fsanitize=thread by scripts/tsan-deps.sh (--deps, default .tsan-deps/; about 15 minutes
# once): Debian's are not instrumented, and the ordering of every gRPC callback is made
# inside them. Those builds go to build-tsan-server/ by default.
# Default set: ci. Default folder: build-asan / build-tsan next to build/. A sanitizer report
# fails the run (halt_on_error); the first failing program ends it with its exit status.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

usage() { sed -n '2,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
mode=${1:-}
case "$mode" in
  address | thread) shift ;;
  -h | --help) usage; exit 0 ;;
  *) echo "sanitizer-check: the first argument must be address or thread, not '${mode}'" >&2
     usage >&2; exit 2 ;;
esac
set_name=ci
dir=""
deps="$here/.tsan-deps"
while [ $# -gt 0 ]; do
  case "$1" in
    --set) set_name=${2:?--set needs a value}; shift 2 ;;
    --dir) dir=${2:?--dir needs a value}; shift 2 ;;
    --deps) deps=${2:?--deps needs a value}; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "sanitizer-check: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done

kernels=(weight_product_test int8_product_test amx_product_test bf16_dot_product_test
         thread_pool_test paged_attention_test row_attention_test attention_row_test
         row_ops_test product_common_test)
# The products' tests again on each lower path this CPU can be forced to.
forced=(weight_product_test int8_product_test bf16_dot_product_test paged_attention_test
        row_ops_test)
engine=(engine_fake_model_test engine_test engine_score_test engine_weights_test
        clip_engine_test scheduler_test block_manager_test media_cache_test)
server=(server_e2e_api_test server_e2e_validation_test server_e2e_hostile_test
        server_e2e_lifecycle_test server_e2e_http_test server_e2e_http_embeddings_test
        server_e2e_auth_test server_e2e_clip_test)
# thread's CI set: the torch-free threaded code (the kernels' worker pool; the engine thread
# over a fake model against submitting, cancelling and draining threads; its caches).
threads_ci=(thread_pool_test engine_fake_model_test scheduler_test block_manager_test
            media_cache_test)
case "$set_name" in
  kernels) programs=("${kernels[@]}") ;;
  engine) programs=("${engine[@]}") ;;
  server) programs=("${server[@]}") ;;
  all) programs=("${kernels[@]}" "${engine[@]}" "${server[@]}") ;;
  ci) if [ "$mode" = address ]; then programs=("${kernels[@]}"); else programs=("${threads_ci[@]}"); fi ;;
  suite) programs=() ;;
  *) echo "sanitizer-check: --set must be ci, kernels, engine, server, all or suite, not '$set_name'" >&2
     exit 2 ;;
esac
needs_model=0
[ "$set_name" = suite ] && needs_model=1
for p in "${programs[@]}"; do [[ $p == server_e2e_* ]] && needs_model=1; done
deps_args=()
if [ "$mode" = thread ] && [ $needs_model = 1 ]; then
  if [ ! -e "$deps/.grpc.done" ] || [ ! -e "$deps/.httplib.done" ]; then
    echo "sanitizer-check: thread --set $set_name needs gRPC, Abseil and cpp-httplib built with" \
      "-fsanitize=thread in $deps: run scripts/tsan-deps.sh first (about 15 minutes on 2" \
      "cores); Debian's are not instrumented and TSan reports the ordering made inside them" \
      "as races (docs/RELIABILITY.md)" >&2
    exit 2
  fi
  deps=$(cd "$deps" && pwd)
  deps_args=(-DCMAKE_PREFIX_PATH="$deps" -DgRPC_DIR="$deps/lib/cmake/grpc"
             -Dabsl_DIR="$deps/lib/cmake/absl")
  export PKG_CONFIG_PATH="$deps/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
  [ -n "$dir" ] || dir="$here/build-tsan-server"
fi
[ -n "$dir" ] || dir="$here/build-$([ "$mode" = address ] && echo asan || echo tsan)"

start=$(date +%s)
mkdir -p "$dir"
cmake -S "$here" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DFLAMINGO_SANITIZE="$mode" -DFLAMINGO_FUZZ_TESTS=OFF "${deps_args[@]}" \
  -DFLAMINGO_BUILD_DEFAULT_MODEL=$([ $needs_model = 1 ] && echo ON || echo OFF) > "$dir/configure.log" \
  || { cat "$dir/configure.log" >&2; exit 1; }
if [ "$set_name" = suite ]; then
  cmake --build "$dir"
  echo "sanitizer-check: built the tree with -fsanitize=$mode in $(($(date +%s) - start)) s"
else
  targets=("${programs[@]}")
  [ $needs_model = 1 ] && targets+=(flamingo-server flamingo-cli default_model)
  cmake --build "$dir" --target "${targets[@]}"
  echo "sanitizer-check: built ${#programs[@]} programs with -fsanitize=$mode in $(($(date +%s) - start)) s"
fi

# LibTorch and protobuf keep static state to the end of the process: leak detection is off.
export ASAN_OPTIONS=detect_leaks=0:halt_on_error=1:abort_on_error=0
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:suppressions=$here/scripts/tsan-suppressions.txt
# The lower paths (a forced path above the CPU's would only repeat the CPU's own).
flags=$(grep -o -w 'avx2\|avx512f\|avx512_vnni\|avx512_bf16\|amx_tile' /proc/cpuinfo | sort -u |
  tr '\n' ' ')
lower=(scalar)
[[ $flags == *avx2* ]] && lower+=(avx2)
[[ $flags == *avx512f* ]] && lower+=(avx512)
[[ $flags == *avx512_vnni* && ($flags == *avx512_bf16* || $flags == *amx_tile*) ]] &&
  lower+=(avx512_vnni)
[[ $flags == *avx512_bf16* && $flags == *amx_tile* ]] && lower+=(avx512_bf16)
run() {
  local label=$1; shift
  local t0; t0=$(date +%s)
  if ! "$@" > "$dir/last-test.log" 2>&1; then
    cat "$dir/last-test.log"
    echo "sanitizer-check: FAILED: $label" >&2
    exit 1
  fi
  echo "sanitizer-check: ok ($(($(date +%s) - t0)) s): $label"
}
if [ "$set_name" = suite ]; then
  # The whole suite as README runs it (the fuzz targets are clang's own ASan builds: off here).
  ctest --test-dir "$dir" --output-on-failure -j2
  echo "sanitizer-check: $mode, the whole suite passed ($(($(date +%s) - start)) s in all)"
  exit 0
fi
for p in "${programs[@]}"; do
  run "$p" "$dir/bin/$p"
  if [[ " ${forced[*]} " == *" $p "* ]]; then
    for isa in "${lower[@]}"; do
      run "$p with FLAMINGO_KERNEL_ISA=$isa" env FLAMINGO_KERNEL_ISA="$isa" "$dir/bin/$p"
    done
  fi
done
echo "sanitizer-check: $mode, set $set_name: every program passed ($(($(date +%s) - start)) s in all)"
