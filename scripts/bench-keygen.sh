#!/usr/bin/env bash
# Times `nodekeys keygen --clients N` against what Flower's
# generate_auth_keys.sh does (one ssh-keygen process per key, then the CSV),
# side by side in one run on this machine, and prints the ratio.
# Usage: scripts/bench-keygen.sh [N]   (default 1000)
set -euo pipefail
n=${1:-1000}
root=$(cd "$(dirname "$0")/.." && pwd)
# Under the checkout: some machines keep /tmp on a slower file system.
work=$(mktemp -d -p "${BENCH_DIR:-$root}" .bench-XXXXXX)
trap 'rm -rf "$work"' EXIT
go build -o "$work/nodekeys" "$root/cmd/nodekeys"

now() { date +%s.%N; }

# Flower's script, as in examples/flower-authentication/generate_auth_keys.sh.
flower() {
  local dir=$1
  mkdir -p "$dir"
  for ((i = 1; i <= n; i++)); do
    ssh-keygen -q -t ecdsa -b 384 -N "" -C "" -f "$dir/client_credentials_$i"
  done
  local out=""
  for ((i = 1; i <= n; i++)); do
    key=$(cut -d' ' -f1,2 <"$dir/client_credentials_$i.pub")
    out+="$key,"
  done
  printf '%s\n' "${out%,}" >"$dir/client_public_keys.csv"
}

# Each run starts after a sync, so none pays for the writes of the one
# before; nodekeys runs before and after Flower's script.
timed() { sync; local t0; t0=$(now); "$@"; echo "$(now) - $t0" | bc; }
g1=$(timed "$work/nodekeys" keygen --quiet --clients "$n" --out "$work/nodekeys-1")
f=$(timed flower "$work/flower")
g2=$(timed "$work/nodekeys" keygen --quiet --clients "$n" --out "$work/nodekeys-2")

awk -v n="$n" -v f="$f" -v g1="$g1" -v g2="$g2" 'BEGIN {
  g = (g1 + g2) / 2
  printf "keygen of %d pairs on %d cores\n", n, '"$(nproc)"'
  printf "  Flower script (ssh-keygen per key): %8.3f s  %7.2f ms/pair\n", f, 1000*f/n
  printf "  nodekeys keygen (before, after):    %8.3f s  %8.3f s  %7.2f ms/pair\n", g1, g2, 1000*g/n
  printf "  ratio: nodekeys is %.0fx faster (%.0fx, %.0fx)\n", f/g, f/g1, f/g2
}'
