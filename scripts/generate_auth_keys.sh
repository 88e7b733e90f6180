#!/usr/bin/env bash
# Drop-in for Flower's examples/*/generate_auth_keys.sh, built on nodekeys.
# Usage: generate_auth_keys.sh [N]   (default 2)
#
# Writes, next to this script, keys/client_credentials_1 ... _N (OpenSSH
# ECDSA P-384, mode 0600), their .pub files and keys/client_public_keys.csv,
# as Flower's script does. Unlike it, existing keys are never deleted: a
# second run stops and names the file in the way. NODEKEYS_FORCE=1 replaces
# them; NODEKEYS_FLAGS adds keygen flags (e.g. --prefix supernode_credentials).
set -euo pipefail
if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
  sed -n '2,/^$/{/^#/!q;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
  exit 0
fi
n=${1:-2}
case $n in
  ''|*[!0-9]*) echo "generate_auth_keys.sh: the number of key pairs must be a whole number, got '$n'" >&2; exit 2 ;;
esac
# dest: the folder the script is in, as invoked (a symbolic link to it
# writes beside the link); here: where its own files are.
dest=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
here=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
if [ -f "$here/nodekeys-bin.sh" ]; then
  # shellcheck source=scripts/nodekeys-bin.sh
  source "$here/nodekeys-bin.sh"
  find_nodekeys
else
  # Copied on its own into a Flower example: nodekeys must be installed.
  NODEKEYS=${NODEKEYS:-$(command -v nodekeys || true)}
  if [ -z "$NODEKEYS" ]; then
    echo "nodekeys not found: in a clone of nodekeys run go install ./cmd/nodekeys (README, Install from a clone), or set NODEKEYS" >&2
    exit 1
  fi
fi

force=()
[ "${NODEKEYS_FORCE:-}" = 1 ] && force=(--force)
# Paths as the caller sees them, from the folder the script was run in.
out=$(realpath --relative-to="$PWD" "$dest/keys" 2>/dev/null || echo "$dest/keys")
# shellcheck disable=SC2086
exec "$NODEKEYS" keygen --clients "$n" --out "$out" "${force[@]}" ${NODEKEYS_FLAGS:-}
