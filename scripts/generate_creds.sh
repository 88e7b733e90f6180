#!/usr/bin/env bash
# Drop-in for Flower's examples/*/generate_creds.py, built on nodekeys.
# Usage: generate_creds.sh [--supernodes N]   (default 2)
#
# Writes, next to this script, certificates/ca.crt, ca.key, server.pem,
# server.key (SANs localhost, 127.0.0.1, ::1) and keys/supernode_credentials_1
# ... _N (OpenSSH ECDSA P-384, mode 0600) with their .pub files, as Flower's
# script does, and keys/client_public_keys.csv. Unlike it, nothing is
# deleted or replaced: a second run stops and names the file in the way.
# NODEKEYS_FLAGS adds init flags (e.g. --add-san superlink.example, or
# --key-type rsa-4096 for the RSA certificates Flower's script makes).
set -euo pipefail
n=2
while [ $# -gt 0 ]; do
  case $1 in
    -h|--help) sed -n '2,/^$/{/^#/!q;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;;
    --supernodes) n=${2:-}; shift 2 || { echo "generate_creds.sh: --supernodes needs a number" >&2; exit 2; } ;;
    --supernodes=*) n=${1#*=}; shift ;;
    *) echo "generate_creds.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
case $n in
  ''|*[!0-9]*) echo "generate_creds.sh: --supernodes must be a whole number, got '$n'" >&2; exit 2 ;;
esac
# dest: the folder the script is in, as invoked; here: where its own files are.
dest=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
here=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
if [ -f "$here/nodekeys-bin.sh" ]; then
  # shellcheck source=scripts/nodekeys-bin.sh
  source "$here/nodekeys-bin.sh"
  find_nodekeys
else
  NODEKEYS=${NODEKEYS:-$(command -v nodekeys || true)}
  if [ -z "$NODEKEYS" ]; then
    echo "nodekeys not found: in a clone of nodekeys run go install ./cmd/nodekeys (README, Install from a clone), or set NODEKEYS" >&2
    exit 1
  fi
fi
rel() { realpath --relative-to="$PWD" "$1" 2>/dev/null || echo "$1"; }
# shellcheck disable=SC2086
exec "$NODEKEYS" init --supernodes "$n" --certs-dir "$(rel "$dest/certificates")" --keys-dir "$(rel "$dest/keys")" ${NODEKEYS_FLAGS:-}
