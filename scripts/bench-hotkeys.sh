#!/usr/bin/env bash
# P-384 verification of a hot key (held by the hot-key cache, both products
# fixed-base) against today's path (a key past its second call) and a cold
# key counted by the cache, in one run: ROUNDS interleaved rounds of each
# benchmark, so that a slow minute of a shared machine falls on every path
# alike, then benchstat with today's path as the baseline column. cpu-ns/op
# is the process's CPU time per verification: the cost per core.
# Usage: scripts/bench-hotkeys.sh [ROUNDS] [BENCHTIME]
set -euo pipefail
rounds=${1:-6}
benchtime=${2:-1s}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go test -c -o "$work/p384.test" "$root/internal/p384"
go test -c -o "$work/verify.test" "$root/verify"
for ((i = 0; i < rounds; i++)); do
  for path in today hot cold; do
    "$work/p384.test" -test.run '^$' -test.bench "^BenchmarkVerify\$/^path=$path\$" -test.benchtime "$benchtime" | grep '^Benchmark' >>"$work/p384.txt"
    for b in VerifyP384 VerifyP384Parallel; do
      "$work/verify.test" -test.run '^$' -test.bench "^Benchmark$b\$/^path=$path\$" -test.benchtime "$benchtime" | grep '^Benchmark' >>"$work/verify.txt"
    done
  done
done
benchstat=(go run golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da)
echo "== internal/p384: Verify (today) against Cache.Verify of a held key (hot) and of a key never promoted (cold)"
(cd "$work" && { echo "pkg: github.com/nodekeys/nodekeys/internal/p384"; cat p384.txt; } >p384.b && "${benchstat[@]}" -col /path p384.b)
echo
echo "== verify: Verifier.VerifyAt, a whole call (SHA-256, DER, window, verification)"
(cd "$work" && { echo "pkg: github.com/nodekeys/nodekeys/verify"; cat verify.txt; } >verify.b && "${benchstat[@]}" -col /path verify.b)
