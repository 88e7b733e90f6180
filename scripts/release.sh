#!/usr/bin/env bash
# Builds release binaries of nodekeys for Linux and macOS on amd64 and
# arm64 from this checkout, reproducibly (-trimpath, no cgo, no VCS
# stamp), into DIST (default dist/), with SHA256SUMS beside them.
#
#   scripts/release.sh [VERSION]       VERSION defaults to git describe
#   TARGETS="linux/amd64" scripts/release.sh v0.3.0
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
version=${1:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
dist=${DIST:-dist}
targets=${TARGETS:-linux/amd64 linux/arm64 darwin/amd64 darwin/arm64}
mkdir -p "$dist"
names=()
for t in $targets; do
  os=${t%/*} arch=${t#*/}
  name="nodekeys-$version-$os-$arch"
  CGO_ENABLED=0 GOOS=$os GOARCH=$arch go build -trimpath -buildvcs=false \
    -ldflags "-s -w -X main.version=$version" -o "$dist/$name" ./cmd/nodekeys
  names+=("$name")
  echo "built $dist/$name"
done
if command -v sha256sum >/dev/null; then sum=(sha256sum); else sum=(shasum -a 256); fi
(cd "$dist" && "${sum[@]}" "${names[@]}" > SHA256SUMS)
echo "wrote $dist/SHA256SUMS; check with: (cd $dist && ${sum[*]} -c SHA256SUMS)"
