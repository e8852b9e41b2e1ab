#!/usr/bin/env bash
# Builds docker/Dockerfile with podman (Debian's) and checks the image as a user would run it:
# size, non-root user, health check, a generation, metrics, a mounted model folder on a
# read-only root, and a drain under load (a call made after SIGTERM gets UNAVAILABLE, the
# requests in flight finish, exit code 0). docs/CONTAINER.md has what it checks and why.
#
# Usage: scripts/container-check.sh [--keep]    (--keep: leave the image behind)
# Environment: FLAMINGO_IMAGE (default flamingo-serve:check), FLAMINGO_CHECK_PORT (default
# 50091; the metrics port is that + 1000).
#
# podman builds OCI images by default, which drop HEALTHCHECK: --format docker. This machine's
# podman also needs (and the script passes): --runtime runc (crun refuses the hybrid
# cgroup layout), the hard ulimits of the host (nofile 20000, nproc 32768), host networking, and
# a local debian:12 base image, made here with debootstrap from the host's Debian mirror when
# missing (no registry is reachable). The Dockerfile itself stays standard.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
image=${FLAMINGO_IMAGE:-flamingo-serve:check}
port=${FLAMINGO_CHECK_PORT:-50091}
metrics_port=$((port + 1000))
http_port=$((port + 2000))
keep=0
[[ ${1:-} == --keep ]] && keep=1
name=flamingo-check-$$
started=$(date +%s)

log() { echo "container-check: $*" >&2; }
fail() {
  log "FAIL: $*"
  podman logs "$name" 2>&1 | tail -n 40 >&2 || true
  exit 1
}
sudo_cmd=()
[[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)

if ! command -v podman >/dev/null || ! command -v runc >/dev/null ||
  ! command -v debootstrap >/dev/null; then
  log "installing podman, runc and debootstrap"
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
    --no-install-recommends podman runc debootstrap uidmap slirp4netns fuse-overlayfs >/dev/null
fi
run_opts=(--runtime runc --ulimit nofile=20000:20000 --ulimit nproc=32768:32768 --network host)

cleanup() {
  podman rm -f -i "$name" >/dev/null 2>&1 || true
  podman rm -f -i "$name-ro" >/dev/null 2>&1 || true
  [[ $keep == 1 ]] || podman rmi -f "$image" >/dev/null 2>&1 || true
}
trap cleanup EXIT

# ---- the base image ------------------------------------------------------------------------
if ! podman image exists debian:12; then
  # The host's Debian mirror (deb822 "URIs:" or one-line "deb URI bookworm ...").
  uris=$( (sed -n 's/^URIs:[[:space:]]*//p' /etc/apt/sources.list.d/*.sources
    sed -n 's/^deb[[:space:]]\+\([^[:space:]]\+\)[[:space:]].*/\1/p' /etc/apt/sources.list \
      /etc/apt/sources.list.d/*.list) 2>/dev/null | tr ' ' '\n' || true)
  mirror=$(grep -v security <<<"$uris" | grep . | head -n 1 || true)
  security=$(grep security <<<"$uris" | head -n 1 || true)
  mirror=${mirror:-http://deb.debian.org/debian}
  security=${security:-http://deb.debian.org/debian-security}
  root=$(mktemp -d /tmp/flamingo-debian12-XXXXXX)
  log "making debian:12 with debootstrap from $mirror"
  "${sudo_cmd[@]}" debootstrap --variant=minbase bookworm "$root" "$mirror" >/tmp/$name-debootstrap.log 2>&1 ||
    { tail -n 20 /tmp/$name-debootstrap.log >&2; fail "debootstrap failed"; }
  printf 'deb %s bookworm main\ndeb %s bookworm-updates main\ndeb %s bookworm-security main\n' \
    "$mirror" "$mirror" "$security" | "${sudo_cmd[@]}" tee "$root/etc/apt/sources.list" >/dev/null
  "${sudo_cmd[@]}" tar -C "$root" -c . | podman import - debian:12 >/dev/null
  "${sudo_cmd[@]}" rm -rf "$root"
fi

# ---- build ---------------------------------------------------------------------------------
log "building $image"
build_start=$(date +%s)
podman build --format docker "${run_opts[@]}" -f "$here/docker/Dockerfile" -t "$image" "$here" >/tmp/$name-build.log 2>&1 ||
  { tail -n 40 /tmp/$name-build.log >&2; fail "podman build failed (log: /tmp/$name-build.log)"; }
log "built in $(($(date +%s) - build_start)) s"
size=$(podman image inspect "$image" --format '{{.Size}}')
log "image size: $((size / 1000000)) MB"
((size <= 1200000000)) || fail "image is $size bytes, over 1.2 GB"
[[ $(podman image inspect "$image" --format '{{.Config.User}}') == flamingo ]] ||
  fail "image does not run as the flamingo user"

# ---- run: health, generation, metrics --------------------------------------------------------
wait_healthy() {  # $1: container
  for _ in $(seq 1 120); do
    if podman healthcheck run "$1" >/dev/null 2>&1; then return 0; fi
    [[ $(podman inspect "$1" --format '{{.State.Running}}') == true ]] || fail "$1 exited"
    sleep 1
  done
  fail "$1 not healthy after 120 s"
}
# (Without systemd, podman cannot schedule the periodic health checks and says so on stderr;
# the script runs them itself with `podman healthcheck run`.)
podman run -d --name "$name" "${run_opts[@]}" -e FLAMINGO_HEALTH_PORT="$port" "$image" \
  --port "$port" --metrics-port "$metrics_port" --http-port "$http_port" \
  >/dev/null 2>/tmp/$name-run.log || fail "podman run: $(cat /tmp/$name-run.log)"
wait_healthy "$name"
chat=$(/usr/bin/python3 - "$http_port" <<'EOF'
import sys, urllib.request
body = b'{"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 3}'
req = urllib.request.Request(f"http://127.0.0.1:{sys.argv[1]}/v1/chat/completions", data=body,
                             headers={"Content-Type": "application/json"})
print(urllib.request.urlopen(req, timeout=30).read().decode())
EOF
) || fail "HTTP chat completion failed"
grep -q '"object":"chat.completion"' <<<"$chat" || fail "no chat completion over HTTP: $chat"
[[ $(podman exec "$name" id -u) != 0 ]] || fail "the server runs as root"
out=$(podman exec "$name" flamingo-cli generate --server "127.0.0.1:$port" --prompt "a photo of" \
  --max-new-tokens 4 --ignore-eos --json) || fail "generate failed"
grep -q '"finish_reason":"length"' <<<"$out" || fail "unexpected generate output: $out"
/usr/bin/python3 - "$metrics_port" <<'PY' || fail "metrics"
import sys, urllib.request
text = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=5).read().decode()
assert "flamingo_requests_total" in text or "flamingo_" in text, text[:500]
PY

# ---- drain under load ----------------------------------------------------------------------
# The clients run on the host (host network): `podman exec` takes ~0.5 s to start each, too
# slow to have 8 requests in flight at a known moment.
cli=$here/build/bin/flamingo-cli
[[ -x $cli ]] || fail "no $cli for the load (build first)"
# Requests the server has finished so far (flamingo_requests_total, every label): the load's
# requests are counted from here.
finished() {
  /usr/bin/python3 - "$metrics_port" <<'PY'
import re, sys, urllib.request
text = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=5).read().decode()
print(int(sum(float(v) for v in re.findall(r"^flamingo_requests_total\{[^}]*\} ([0-9.e+]+)$", text, re.M))))
PY
}
finished_before=$(finished) || fail "metrics"
pids=()
for i in $(seq 1 8); do
  "$cli" generate --server "127.0.0.1:$port" --prompt "drain $i" \
    --max-new-tokens 1000 --ignore-eos --json >/tmp/$name-req-$i.json 2>&1 &
  pids+=($!)
done
# Until the server has all 8 (running, queued or already finished: the clients link LibTorch
# and take a moment each to start, while 1000 tokens take the demo model well under a second
# here), then SIGTERM at once: the last one admitted is still running.
/usr/bin/python3 - "$metrics_port" "$finished_before" <<'PY' || fail "the 8 requests did not all reach the server"
import re, sys, time, urllib.request
def value(text, name):
    return sum(float(v) for v in re.findall(rf"^{name}(?:\{{[^}}]*\}})? ([0-9.e+]+)$", text, re.M))
for _ in range(1200):
    text = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=5).read().decode()
    admitted = (value(text, "flamingo_running_requests") + value(text, "flamingo_queue_length")
                + value(text, "flamingo_requests_total") - float(sys.argv[2]))
    if admitted >= 8 and value(text, "flamingo_running_requests") >= 1:
        sys.exit(0)
    time.sleep(0.02)
sys.exit(1)
PY
podman kill --signal TERM "$name" >/dev/null
for _ in $(seq 1 50); do
  podman logs "$name" 2>&1 | grep -q "received SIGTERM: draining" && break
  sleep 0.1
done
podman logs "$name" 2>&1 | grep -q "received SIGTERM: draining" || fail "no drain after SIGTERM"
late=0
"$cli" generate --server "127.0.0.1:$port" --prompt late --max-new-tokens 2 --json \
  >/tmp/$name-late.txt 2>&1 || late=$?
[[ $late == 3 ]] && grep -q UNAVAILABLE /tmp/$name-late.txt ||
  fail "a call after SIGTERM was not refused with UNAVAILABLE: $(cat /tmp/$name-late.txt)"
for i in "${!pids[@]}"; do
  wait "${pids[$i]}" || fail "in-flight request $((i + 1)) failed: $(cat /tmp/$name-req-$((i + 1)).json)"
  grep -q '"finish_reason":"length"' /tmp/$name-req-$((i + 1)).json ||
    fail "in-flight request $((i + 1)): $(cat /tmp/$name-req-$((i + 1)).json)"
done
code=$(podman wait "$name")
[[ $code == 0 ]] || fail "exit code $code after SIGTERM"
after=$(podman logs "$name" 2>&1 | sed -n '/received SIGTERM: draining/,$p' | grep -c "finish=length" || true)
((after > 0)) || fail "no request was still running when SIGTERM came (the drain check proved nothing)"
log "drain: late call UNAVAILABLE, 8 requests finished ($after after SIGTERM), exit 0"
rm -f /tmp/$name-*.json /tmp/$name-late.txt /tmp/$name-build.log /tmp/$name-debootstrap.log

# ---- a mounted model on a read-only root -----------------------------------------------------
model=$here/build/models/idefics-tiny-random
[[ -f $model/config.json ]] || fail "no model at $model to mount (build first)"
podman run -d --name "$name-ro" "${run_opts[@]}" -e FLAMINGO_HEALTH_PORT="$port" --read-only \
  -v "$model:/model:ro" "$image" \
  --model /model --port "$port" --metrics-port "$metrics_port" --http-port "$http_port" \
  >/dev/null 2>/tmp/$name-run.log ||
  fail "podman run: $(cat /tmp/$name-run.log)"
wait_healthy "$name-ro"
info=$(podman exec "$name-ro" flamingo-cli info --server "127.0.0.1:$port") || fail "info failed"
grep -q '"/model"' <<<"$info" || fail "the mounted model is not the one served: $info"
podman stop -t 60 "$name-ro" >/dev/null
code=$(podman inspect "$name-ro" --format '{{.State.ExitCode}}')
[[ $code == 0 ]] || fail "read-only run: exit code $code after stop"

rm -f /tmp/$name-run.log
log "ok in $(($(date +%s) - started)) s (image $((size / 1000000)) MB)"
