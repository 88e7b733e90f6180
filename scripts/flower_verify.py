"""Flower's per-call SuperLink work, for scripts/bench-vs-python.sh.

Written from docs/protocol.md, "Node authentication": for each call, load the PEM public key,
check it against the allowlist of PEM bytes, verify the ECDSA/SHA-256
signature over the timestamp with `cryptography`, parse the timestamp with
datetime.fromisoformat and check -5 < now - timestamp < 305.

Usage: flower_verify.py CALLS.jsonl ALLOWLIST.csv SECONDS PROCESSES
Prints calls per second on one process and on PROCESSES processes.
"""
import base64
import csv
import json
import multiprocessing
import sys
import time
from datetime import datetime, timezone

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec


def load(calls_path, csv_path):
    allowed = set()
    with open(csv_path, newline="") as f:
        for row in csv.reader(f):
            for element in row:
                key = serialization.load_ssh_public_key(element.encode())
                allowed.add(key.public_bytes(serialization.Encoding.PEM,
                                             serialization.PublicFormat.SubjectPublicKeyInfo))
    calls = []
    with open(calls_path) as f:
        for line in f:
            c = json.loads(line)
            calls.append((base64.b64decode(c["flwr-public-key-bin"]), c["flwr-timestamp"],
                          base64.b64decode(c["flwr-signature-bin"])))
    return calls, allowed


def check(pem, ts, sig, allowed):
    if not pem or not ts or not sig:
        return False
    if pem not in allowed:
        return False
    key = serialization.load_pem_public_key(pem)
    key.verify(sig, ts.encode("ascii"), ec.ECDSA(hashes.SHA256()))
    diff = (datetime.now(timezone.utc) - datetime.fromisoformat(ts)).total_seconds()
    return -5 < diff < 305


def run(args):
    calls_path, csv_path, seconds = args
    calls, allowed = load(calls_path, csv_path)
    n = 0
    deadline = time.perf_counter() + seconds
    start = time.perf_counter()
    while True:
        pem, ts, sig = calls[n % len(calls)]
        if not check(pem, ts, sig, allowed):
            raise SystemExit("a valid call was refused")
        n += 1
        if n % 16 == 0 and time.perf_counter() > deadline:
            break
    return n, time.perf_counter() - start


def main():
    calls_path, csv_path, seconds, procs = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    n, t = run((calls_path, csv_path, seconds))
    one = n / t
    with multiprocessing.Pool(procs) as pool:
        results = pool.map(run, [(calls_path, csv_path, seconds)] * procs)
    all_ = sum(n for n, _ in results) / max(t for _, t in results)
    print(json.dumps({"per_second_one_core": one, "per_second_all_cores": all_, "processes": procs}))


if __name__ == "__main__":
    main()
