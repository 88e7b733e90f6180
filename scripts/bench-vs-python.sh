#!/usr/bin/env bash
# Flower's Python per-call verification against the nodekeys verify core, on
# the same calls, side by side in one run, on one core and on all cores.
# Usage: scripts/bench-vs-python.sh [SECONDS]   (default 3 per figure)
set -euo pipefail
secs=${1:-3}
root=$(cd "$(dirname "$0")/.." && pwd)
cores=$(nproc)
py_cmd=${NODEKEYS_PYTHON:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go build -o "$work/nodekeys" "$root/cmd/nodekeys"

# 64 SuperNodes; Python's cryptography signs 1024 calls as SuperNodes do.
"$work/nodekeys" keygen --quiet --clients 64 --out "$work/keys" --seed 6e6f64656b6579732d62656e63682d7079 2>/dev/null
"$py_cmd" - "$work/keys" >"$work/calls.jsonl" <<'PY'
import base64, json, sys
from datetime import datetime, timedelta, timezone
from cryptography.hazmat.primitives import hashes, serialization as s
from cryptography.hazmat.primitives.asymmetric import ec
d = sys.argv[1]
now = datetime.now(timezone.utc)
for i in range(1024):
    k = s.load_ssh_private_key(open(f"{d}/client_credentials_{i % 64 + 1}", "rb").read(), password=None)
    ts = (now - timedelta(seconds=1, milliseconds=i)).isoformat()
    sig = k.sign(ts.encode("ascii"), ec.ECDSA(hashes.SHA256()))
    pem = k.public_key().public_bytes(s.Encoding.PEM, s.PublicFormat.SubjectPublicKeyInfo)
    print(json.dumps({"flwr-public-key-bin": base64.b64encode(pem).decode(), "flwr-timestamp": ts,
                      "flwr-signature-bin": base64.b64encode(sig).decode()}))
PY

py=$("$py_cmd" "$root/scripts/flower_verify.py" "$work/calls.jsonl" "$work/keys/client_public_keys.csv" "$secs" "$cores")
go=$("$work/nodekeys" bench --headers "$work/calls.jsonl" --allowlist "$work/keys/client_public_keys.csv" \
  --duration "${secs}s" --workers "$cores" --json)

"$py_cmd" - "$py" "$go" "$cores" <<'PY'
import json, sys
py, go, cores = json.loads(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3])
import cryptography, ssl
from cryptography.hazmat.backends.openssl.backend import backend
print(f"1024 calls signed by 64 SuperNodes; {cores} cores; cryptography {cryptography.__version__}, {backend.openssl_version_text()}")
print(f"{'calls/s':<12}{'Flower (Python)':>18}{'nodekeys':>12}{'ratio':>9}")
for label, key in (("one core", "per_second_one_core"), ("all cores", "per_second_all_cores")):
    print(f"{label:<12}{py[key]:>18.0f}{go[key]:>12.0f}{go[key] / py[key]:>8.2f}x")
print(f"nodekeys scaling: {go['per_second_all_cores'] / (go['per_second_one_core'] * cores):.2f} of {cores} x one core")
PY
