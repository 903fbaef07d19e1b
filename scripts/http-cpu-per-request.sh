#!/usr/bin/env bash
# The server's CPU time per request over the TUN, with N workers (issue 13's scaling check b):
# the release `http_server` example on synack in a network namespace of its own (its default
# TUN: the kernel at 198.18.0.1, synack at 198.18.0.2), wrk with C keep-alive connections for
# S seconds from the kernel's side, and the server's user + system CPU seconds over the run
# (/proc/PID/stat). Needs root, wrk and curl; build first with
# `cargo build --release --example http_server`.
#
#   scripts/http-cpu-per-request.sh [WORKERS] [CONNECTIONS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
workers=${1:-1}
conns=${2:-50}
secs=${3:-5}
bin=target/release/examples/http_server
[ -x "$bin" ] || { echo "build it first: cargo build --release --example http_server" >&2; exit 2; }
ns="synack-httpcpu-$$"
root=$(mktemp -d)
head -c 1000 /dev/zero > "$root/1k"
pid=""
cleanup() {
    [ -z "$pid" ] || kill "$pid" 2>/dev/null || true
    [ -z "$pid" ] || wait "$pid" 2>/dev/null || true
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
    ip netns delete "$ns" 2>/dev/null || true
    rm -rf "$root"
}
trap cleanup EXIT
ip netns add "$ns"
ip netns exec "$ns" ip link set lo up
ip netns exec "$ns" "$bin" --root "$root" --port 8080 --workers "$workers" >/dev/null 2>&1 &
pid=$!
url=http://198.18.0.2:8080/1k
for _ in $(seq 1 100); do
    ip netns exec "$ns" curl -s -o /dev/null "$url" && break
    sleep 0.1
done
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
before=$(ticks)
out=$(ip netns exec "$ns" wrk -t1 -c"$conns" -d"${secs}s" "$url" 2>&1)
after=$(ticks)
requests=$(echo "$out" | awk '/requests in/ {print $1}')
hz=$(getconf CLK_TCK)
python3 - "$workers" "$conns" "$requests" "$before" "$after" "$hz" <<'PY'
import sys
w, c, req, t0, t1, hz = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
cpu = (t1 - t0) / hz
print(f"workers {w}, {c} connections: {req} requests, {cpu:.2f} CPU s, {cpu * 1e6 / req:.1f} us a request")
PY
