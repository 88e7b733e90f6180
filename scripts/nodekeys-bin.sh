# Sourced by the drop-in scripts: sets NODEKEYS to a nodekeys binary.
# Order: $NODEKEYS if set; nodekeys on PATH; built once from the nodekeys
# checkout this script sits in (cached until the sources change); else
# `go install` of the module.
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
  echo "nodekeys not found: installing it with go install" >&2
  GOBIN="${XDG_CACHE_HOME:-$HOME/.cache}/nodekeys" go install github.com/nodekeys/nodekeys/cmd/nodekeys@latest >&2
  NODEKEYS="${XDG_CACHE_HOME:-$HOME/.cache}/nodekeys/nodekeys"
}
