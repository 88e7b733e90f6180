#!/usr/bin/env bash
# Drop-in for Flower's examples/*/generate_cert.sh, built on nodekeys.
# Usage: generate_cert.sh [certificate.conf]
#
# Writes, next to this script, certificates/ca.crt, ca.key, server.pem and
# server.key. The server certificate's SANs come from the [alt_names]
# section of the openssl config (certificate.conf beside this script by
# default, as Flower's script reads it); without one, localhost, 127.0.0.1
# and ::1. Unlike Flower's script, nothing is deleted: a CA already in
# certificates/ is kept, and NODEKEYS_FORCE=1 renews the server
# certificate with it. NODEKEYS_FLAGS adds certgen flags (e.g.
# --key-type rsa-4096, what Flower's script makes).
set -euo pipefail
conf_arg=${1:-}
[ -n "$conf_arg" ] && conf_arg=$(readlink -f "$conf_arg")
here=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
cd "$(dirname "${BASH_SOURCE[0]}")"
if [ -f "$here/nodekeys-bin.sh" ]; then
  # shellcheck source=scripts/nodekeys-bin.sh
  source "$here/nodekeys-bin.sh"
  find_nodekeys
else
  # Copied on its own into a Flower example: nodekeys must be installed.
  NODEKEYS=${NODEKEYS:-$(command -v nodekeys || true)}
  if [ -z "$NODEKEYS" ]; then
    echo "nodekeys not found: go install github.com/nodekeys/nodekeys/cmd/nodekeys@latest, or set NODEKEYS" >&2
    exit 1
  fi
fi

conf=${conf_arg:-certificate.conf}
sans=()
if [ -f "$conf" ]; then
  # DNS.n = name / IP.n = address lines of the [alt_names] section.
  while IFS= read -r san; do
    sans+=(--san "$san")
  done < <(awk '
    /^[[:space:]]*\[/ { section = $0; gsub(/[][[:space:]]/, "", section); next }
    section == "alt_names" && /^[[:space:]]*(DNS|IP)\.[0-9]+[[:space:]]*=/ {
      sub(/^[^=]*=[[:space:]]*/, ""); sub(/[[:space:]]*(#.*)?$/, ""); if ($0 != "") print
    }' "$conf")
elif [ -n "$conf_arg" ]; then
  echo "generate_cert.sh: $conf_arg: no such file" >&2
  exit 1
fi
force=()
[ "${NODEKEYS_FORCE:-}" = 1 ] && force=(--force)
# shellcheck disable=SC2086
exec "$NODEKEYS" certgen --out certificates "${sans[@]}" "${force[@]}" ${NODEKEYS_FLAGS:-}
