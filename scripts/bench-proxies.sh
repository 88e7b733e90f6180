#!/usr/bin/env bash
# nodekeys gateway against HAProxy, a bare frame relay and no proxy, in one run, on
# loopback: valid Fleet calls a second, p50/p99 latency added to one call at
# a time, and CPU time per call of the proxy and of the upstream, with both
# proxies in front of the same upstream: the Go stand-in SuperLink (in a
# process of its own), and Flower's own SuperLink 1.27 (flower-superlink,
# from $NODEKEYS_FLOWER or .peers/flower, made by
# ../shared/peers/flower/setup.sh; skipped if absent), whose nodes are
# registered and activated first and then send heartbeats. HAProxy (Debian's haproxy) terminates TLS and speaks
# HTTP/2 on both sides, as an operator would run it in front of a SuperLink
# without node authentication; and the bare frame relay of internal/cmd/gwbench
# (relay.go: TLS, HTTP/2 frames relayed, the verification, nothing else), the
# least a Go proxy with node authentication does. Then a CPU profile of the gateway under the
# same load (perf, Debian's linux-perf), in shares: verification, TLS,
# HTTP/2, proxying, system calls, the Go runtime.
# With NODEKEYS_BASE=path/to/another/nodekeys, that binary's gateway runs
# beside this tree's (a before/after in one run).
# Every phase runs a fixed time; ROUNDS interleaved rounds; medians.
# Usage: scripts/bench-proxies.sh [SECONDS_PER_PHASE] [ROUNDS] [extra gwbench flags]
set -euo pipefail
secs=${1:-3}
rounds=${2:-3}
shift 2 || shift $# || true
root=$(cd "$(dirname "$0")/.." && pwd)
command -v haproxy >/dev/null || { echo "bench-proxies: haproxy not found (apt-get install haproxy)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go build -o "$work/nodekeys" "$root/cmd/nodekeys"
go build -o "$work/gwbench" "$root/internal/cmd/gwbench"
args=(-compare -nodekeys "$work/nodekeys" -duration "${secs}s" -rounds "$rounds")
if [ -n "${NODEKEYS_BASE:-}" ]; then
  args+=(-base-nodekeys "$NODEKEYS_BASE")
fi
flower=${NODEKEYS_FLOWER:-$root/.peers/flower}/1.27/bin/flower-superlink
if [ -x "$flower" ]; then
  args+=(-superlink "$flower")
else
  echo "bench-proxies: no $flower; the Flower SuperLink phases are skipped" >&2
fi
if command -v perf >/dev/null; then
  args+=(-perf "$work/gateway.perf")
fi
"$work/gwbench" "${args[@]}" "$@" 2> >(grep -v '^\[NOTICE\]\|^\[WARNING\]' >&2)
if [ -s "$work/gateway.perf" ]; then
  echo
  echo "the gateway's CPU under load (round 1), by what it was spent on:"
  perf script -i "$work/gateway.perf" 2>/dev/null | "$root/scripts/perf_shares.py" --top 15
fi
