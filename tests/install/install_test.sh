#!/usr/bin/env bash
# `cmake --install` into a fresh prefix, run from another directory: the installed binaries
# find the bundled model and prompt templates next to themselves (model/install_paths.h), the
# server starts serving from the installed tree and drains on SIGTERM, and
# FLAMINGO_DEFAULT_MODEL / FLAMINGO_TEMPLATES_DIR override the lookup.
# Usage: install_test.sh BUILD_DIR
set -euo pipefail
build=$(cd "$1" && pwd)
prefix=$(mktemp -d /tmp/flamingo_install_XXXXXX)
server_pid=
cleanup() {
  [[ -n $server_pid ]] && kill -9 "$server_pid" 2>/dev/null || true
  rm -rf "$prefix"
}
trap cleanup EXIT
fail() { echo "install_test: FAIL: $*" >&2; exit 1; }

cmake --install "$build" --prefix "$prefix" > /dev/null
data=$prefix/share/flamingo-serve
for f in bin/flamingo-cli bin/flamingo-server bin/flamingo-bench; do
  [[ -x $prefix/$f ]] || fail "$f not installed"
done
[[ -f $data/models/flamingo-demo/config.json ]] || fail "bundled model not installed"
[[ -f $data/templates/idefics.json ]] || fail "templates not installed"

cd /
"$prefix/bin/flamingo-cli" --help | grep -qF "(default --model): $data/models/flamingo-demo" ||
  fail "flamingo-cli does not find the installed model"
"$prefix/bin/flamingo-server" --help | grep -qF "the bundled templates: $data/templates" ||
  fail "flamingo-server does not find the installed templates"
FLAMINGO_DEFAULT_MODEL=/elsewhere "$prefix/bin/flamingo-cli" --help |
  grep -qF "(default --model): /elsewhere" || fail "FLAMINGO_DEFAULT_MODEL ignored"
FLAMINGO_TEMPLATES_DIR=/elsewhere "$prefix/bin/flamingo-server" --help |
  grep -qF "the bundled templates: /elsewhere" || fail "FLAMINGO_TEMPLATES_DIR ignored"

out=$("$prefix/bin/flamingo-cli" generate --prompt "a photo of" --max-new-tokens 2 \
  --ignore-eos --json) || fail "installed flamingo-cli generate failed"
grep -q '"token_ids"' <<< "$out" || fail "no tokens: $out"

log=$prefix/server.log
# A free port below the kernel's ephemeral range: the server's own --port 0 bind cannot take it.
http_port=$(/usr/bin/python3 -c '
import random, socket
high = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
for port in random.sample(range(10000, max(high, 11000)), 100):
    try:
        socket.socket().bind(("127.0.0.1", port))
    except OSError:
        continue
    print(port)
    break
')
"$prefix/bin/flamingo-server" --port 0 --metrics-port 0 --http-port "$http_port" > "$log" 2>&1 &
server_pid=$!
for _ in $(seq 1 300); do
  grep -q "ready: model $data/models/flamingo-demo" "$log" &&
    break
  kill -0 "$server_pid" 2>/dev/null || fail "server exited: $(cat "$log")"
  sleep 0.1
done
grep -q "prompt templates: $data/templates/idefics.json" "$log" ||
  fail "server did not load the installed templates: $(cat "$log")"
grep -q "chat template: $data/templates/idefics-chat.json" "$log" ||
  fail "server did not load the installed chat template: $(cat "$log")"
kill -TERM "$server_pid"
wait "$server_pid" || fail "server exit status $? after SIGTERM: $(cat "$log")"
server_pid=
echo "install_test: ok ($prefix)"
