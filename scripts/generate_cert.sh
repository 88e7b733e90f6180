#!/usr/bin/env bash
# Drop-in for Flower's examples/*/generate_cert.sh, built on nodekeys.
# Usage: generate_cert.sh [certificate.conf]
#
# Writes, next to this script, certificates/ca.crt, ca.key, server.pem and
# server.key. The server certificate's SANs come from the openssl config
# (certificate.conf beside this script by default, as Flower's script reads
# it): the DNS.n and IP.n lines of its [alt_names] section, or an inline
# subjectAltName = DNS:name, IP:address line; without either, localhost,
# 127.0.0.1 and ::1. Unlike Flower's script, nothing is deleted: a CA
# already in certificates/ is kept, and NODEKEYS_FORCE=1 renews the server
# certificate with it. NODEKEYS_FLAGS adds certgen flags (e.g.
# --key-type rsa-4096, what Flower's script makes).
set -euo pipefail
if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
  sed -n '2,/^$/{/^#/!q;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
  exit 0
fi
# dest: the folder the script is in, as invoked (a symbolic link to it
# writes beside the link); here: where its own files are.
dest=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
here=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
conf=$dest/certificate.conf
if [ -n "${1:-}" ]; then
  conf=$(readlink -f "$1")
  if [ ! -f "$conf" ]; then
    echo "generate_cert.sh: $1: no such file" >&2
    exit 1
  fi
fi
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

sans=()
if [ -f "$conf" ]; then
  # DNS.n = name / IP.n = address lines of [alt_names], and any inline
  # subjectAltName = DNS:name, IP:address (other kinds are left out).
  while IFS= read -r san; do
    sans+=(--san "$san")
  done < <(awk '
    /^[[:space:]]*\[/ { section = $0; gsub(/[][[:space:]]/, "", section); next }
    section == "alt_names" && /^[[:space:]]*(DNS|IP)\.[0-9]+[[:space:]]*=/ {
      sub(/^[^=]*=[[:space:]]*/, ""); sub(/[[:space:]]*(#.*)?$/, ""); if ($0 != "") print
    }
    /^[[:space:]]*subjectAltName[[:space:]]*=/ {
      v = $0; sub(/^[^=]*=[[:space:]]*/, "", v); sub(/[[:space:]]*#.*$/, "", v)
      n = split(v, parts, ",")
      for (i = 1; i <= n; i++) {
        p = parts[i]; gsub(/^[[:space:]]+|[[:space:]]+$/, "", p)
        if (p ~ /^(DNS|IP):/) { sub(/^[A-Z]+:/, "", p); print p }
      }
    }' "$conf" | awk '!seen[$0]++')
fi
force=()
[ "${NODEKEYS_FORCE:-}" = 1 ] && force=(--force)
# Paths as the caller sees them, from the folder the script was run in.
out=$(realpath --relative-to="$PWD" "$dest/certificates" 2>/dev/null || echo "$dest/certificates")
# shellcheck disable=SC2086
exec "$NODEKEYS" certgen --out "$out" "${sans[@]}" "${force[@]}" ${NODEKEYS_FLAGS:-}
