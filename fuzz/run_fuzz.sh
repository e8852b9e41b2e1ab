#!/usr/bin/env bash
# Runs one libFuzzer target for a bounded time (the ctest label "fuzz"), starting from its
# committed seed corpus (read-only; new inputs go to a scratch folder). On a finding it prints
# the input in hex and exits 1; a missing binary (no clang at configure time) exits 77 (skip).
#   fuzz/run_fuzz.sh BINARY SEED_DIR SECONDS
set -euo pipefail
binary=$1 seeds=$2 seconds=$3
if [ ! -x "$binary" ]; then
  echo "SKIP: $binary was not built (clang++ missing when configuring? see scripts/install-deps.sh)" >&2
  exit 77
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/corpus"
set +e
ASAN_OPTIONS=detect_leaks=1 "$binary" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
  -print_final_stats=1 -artifact_prefix="$work/" "$work/corpus" "$seeds" >"$work/log" 2>&1
rc=$?
set -e
grep -E "stat::number_of_executed_units|stat::new_units_added|Done [0-9]+ runs" "$work/log" || true
if [ $rc -ne 0 ]; then
  tail -60 "$work/log"
  for f in "$work"/crash-* "$work"/leak-* "$work"/timeout-* "$work"/oom-*; do
    [ -e "$f" ] || continue
    echo "finding: $(basename "$f") ($(stat -c %s "$f") bytes):"
    od -A x -t x1z "$f" | head -40
  done
  exit 1
fi
