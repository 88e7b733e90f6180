#!/usr/bin/env bash
# nodekeys gateway replicas sharing one Redis, behind HAProxy's TCP round
# robin, on loopback, in one run: valid Fleet calls a second and latency for
# 1 gateway without Redis (the baseline), 1 with Redis, and 1, 2 and 4
# replicas; CPU time per call of the gateways, Redis and HAProxy; Redis's
# round trips and memory per replay entry and rate bucket. Everything shares
# this machine's cores, so more replicas cannot add calls here beyond them.
# Needs redis-server and haproxy (Debian packages).
# Usage: scripts/bench-replicas.sh [SECONDS_PER_PHASE] [extra gwbench flags]
set -euo pipefail
secs=${1:-3}
shift || true
root=$(cd "$(dirname "$0")/.." && pwd)
for p in redis-server haproxy; do
  command -v "$p" >/dev/null || { echo "bench-replicas: $p not found (apt-get install $p)" >&2; exit 1; }
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go build -o "$work/nodekeys" "$root/cmd/nodekeys"
go build -o "$work/gwbench" "$root/internal/cmd/gwbench"
"$work/gwbench" -nodekeys "$work/nodekeys" -replicas 1,2,4 -duration "${secs}s" "$@" 2> >(grep -v '^\[NOTICE\]' >&2)
