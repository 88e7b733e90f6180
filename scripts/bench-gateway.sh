#!/usr/bin/env bash
# nodekeys gateway side by side in one run, on loopback: valid Fleet calls a
# second and added latency through the gateway against straight to a Go
# stand-in SuperLink; goodput while a flooder sends stale, unknown-key and
# bad-signature calls at full speed, for the gateway in front of a Python
# SuperLink stand-in (Flower's own per-call checks, Debian's python3-grpcio
# and python3-cryptography) against that stand-in alone; and the same
# floods for the gateway in front of Flower's own SuperLink 1.27
# (flower-superlink from $NODEKEYS_FLOWER or .peers/flower, made by
# ../shared/peers/flower/setup.sh; skipped if absent) against that SuperLink
# alone, its 64 nodes registered and activated first, their heartbeats the
# valid calls. All phases interleaved in rounds (-rounds, 3), medians.
# Usage: scripts/bench-gateway.sh [SECONDS_PER_PHASE] [extra gwbench flags]
set -euo pipefail
secs=${1:-3}
shift || true
root=$(cd "$(dirname "$0")/.." && pwd)
py=${NODEKEYS_PYTHON:-/usr/bin/python3}
if ! "$py" -c 'import grpc, cryptography' 2>/dev/null; then
  echo "bench-gateway: $py cannot import grpc and cryptography (apt-get install python3-grpcio python3-cryptography)" >&2
  exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go build -o "$work/nodekeys" "$root/cmd/nodekeys"
go build -o "$work/gwbench" "$root/internal/cmd/gwbench"
args=(-nodekeys "$work/nodekeys" -python "$py" -script "$root/scripts/flower_superlink_standin.py" -duration "${secs}s")
flower=${NODEKEYS_FLOWER:-$root/.peers/flower}/1.27/bin/flower-superlink
if [ -x "$flower" ]; then
  args+=(-superlink "$flower")
else
  echo "bench-gateway: no $flower; the Flower SuperLink phases are skipped" >&2
fi
"$work/gwbench" "${args[@]}" "$@" 2> >(grep -v '^\[NOTICE\]\|^\[WARNING\]' >&2)
