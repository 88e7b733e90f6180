#!/usr/bin/env python3
"""Shares of a Go process's CPU profile by what the time was spent on.

Reads `perf script` output (perf record -g) on stdin and gives each sample
to the first category that a frame names, walking from the sampled
function towards the root: so time in malloc or the garbage collector's
assists counts for the code that allocated, and time in the kernel counts
for the system call, which counts for the code that made it (a socket
write under TLS is "kernel: socket I/O"). Samples with only runtime and
kernel frames are the runtime's own (scheduler, background GC, timers).
Usage: perf script -i perf.data | scripts/perf_shares.py [--top N]
"""
import collections
import re
import sys

# (category, pattern on the function name), tried in order for each frame.
RULES = [
    ("verification (P-384, SHA-256, headers)", re.compile(
        r"nodekeys/internal/p384\.|nodekeys/verify[./]|nodekeys/sign\.|crypto/sha256|crypto/internal/fips140/sha256|math/big\.")),
    ("TLS (AES-GCM records, handshakes)", re.compile(
        r"^crypto/|vendor/golang.org/x/crypto|golang.org/x/crypto")),
    ("HTTP/2 and gRPC transport (frames, HPACK, flow control)", re.compile(
        r"golang.org/x/net/http2|google.golang.org/grpc/internal/transport|google.golang.org/grpc/internal/grpcsync")),
    ("metrics (Prometheus)", re.compile(r"prometheus")),
    ("proxying (gateway handler, gRPC streams, codec)", re.compile(
        r"nodekeys/gateway\.|google.golang.org/grpc|nodekeys/")),
]
KERNEL = "kernel: socket I/O and system calls"
RUNTIME = "Go runtime alone (scheduler, background GC, timers)"


def category(frames):
    """frames: function names, leaf first."""
    in_kernel = bool(frames) and frames[0][1]
    for name, _ in frames:
        for cat, pat in RULES:
            if pat.search(name):
                if in_kernel and not name.startswith("runtime."):
                    # A system call made by this code: socket I/O for the
                    # network code, which is all this process does.
                    return KERNEL
                return cat
    if in_kernel:
        # Kernel time under the runtime alone: futex, epoll, nanosleep.
        return RUNTIME if any(n.startswith("runtime.") for n, _ in frames) else KERNEL
    return RUNTIME


def main():
    top = 0
    if len(sys.argv) > 2 and sys.argv[1] == "--top":
        top = int(sys.argv[2])
    counts = collections.Counter()
    leaves = collections.Counter()
    frames, total = [], 0
    for line in sys.stdin:
        line = line.rstrip("\n")
        if not line.strip():
            if frames:
                counts[category(frames)] += 1
                leaves[frames[0][0]] += 1
                total += 1
            frames = []
            continue
        if line[0] not in " \t":
            continue  # the sample's header line
        parts = line.split(None, 1)
        if len(parts) < 2:
            continue
        sym, _, dso = parts[1].rpartition(" (")
        kernel = "kernel.kallsyms" in dso
        sym = re.sub(r"\+0x[0-9a-f]+$", "", sym)
        sym = re.sub(r"\.abi0$", "", sym)
        frames.append((sym, kernel))
    if frames:
        counts[category(frames)] += 1
        total += 1
    if not total:
        sys.exit("perf_shares: no samples")
    print(f"{total} samples")
    for cat, n in counts.most_common():
        print(f"{100 * n / total:5.1f}%  {cat}")
    if top:
        print(f"\nthe {top} functions most sampled (leaf):")
        for name, n in leaves.most_common(top):
            print(f"{100 * n / total:5.1f}%  {name}")


main()
