# Sourced by the drop-in scripts: sets NODEKEYS to a nodekeys binary.
# Order: $NODEKEYS if set; nodekeys on PATH; built once from the nodekeys
# checkout this script sits in (cached until the sources change); else
# an error that says how to install it.
find_nodekeys() {
  if [ -n "${NODEKEYS:-}" ]; then return; fi
  if command -v nodekeys >/dev/null 2>&1; then NODEKEYS=$(command -v nodekeys); return; fi
  local here src cache
  here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
  src=$(cd "$here/.." && pwd)
  if [ -f "$src/go.mod" ] && [ -d "$src/cmd/nodekeys" ]; then
    cache="${XDG_CACHE_HOME:-$HOME/.cache}/nodekeys"
    NODEKEYS="$cache/nodekeys"
    if [ ! -x "$NODEKEYS" ] || [ -n "$(find "$src" -name '*.go' -newer "$NODEKEYS" -print -quit)" ]; then
      mkdir -p "$cache"
      (cd "$src" && go build -o "$NODEKEYS" ./cmd/nodekeys) >&2
    fi
    return
  fi
  # The module is not published: go install ...@latest cannot fetch it.
  echo "nodekeys not found: in a clone of nodekeys run go install ./cmd/nodekeys (README, Install from a clone), or set NODEKEYS" >&2
  return 1
}
