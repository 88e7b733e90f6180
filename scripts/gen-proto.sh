#!/usr/bin/env bash
# Regenerates internal/flwrpb/*.pb.go from control.proto and
# federation.proto with protoc (Debian's protobuf-compiler) and
# protoc-gen-go at the version go.mod names, fetched from the Go module
# proxy.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
command -v protoc >/dev/null || { echo "gen-proto: protoc not found: apt-get install protobuf-compiler" >&2; exit 1; }
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
version=$(cd "$root" && go list -m -f '{{.Version}}' google.golang.org/protobuf)
GOBIN=$bin go install "google.golang.org/protobuf/cmd/protoc-gen-go@$version"
cd "$root/internal/flwrpb"
PATH=$bin:$PATH protoc --go_out=. --go_opt=paths=source_relative control.proto federation.proto
echo "wrote internal/flwrpb/control.pb.go and federation.pb.go (protoc $(protoc --version | cut -d' ' -f2), protoc-gen-go $version)"
