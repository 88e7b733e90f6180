#!/usr/bin/env bash
# Regenerates internal/flwrpb/control.pb.go, control_grpc.pb.go and
# federation.pb.go from control.proto and federation.proto with protoc
# (Debian's protobuf-compiler) and the generators go.mod pins as tools (protoc-gen-go of google.golang.org/protobuf,
# protoc-gen-go-grpc v1.6.x), built from the module cache.
#
#   scripts/gen-proto.sh          write the files
#   scripts/gen-proto.sh --check  generate into a temporary folder and fail
#                                 if the committed files differ (CI)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
command -v protoc >/dev/null || { echo "gen-proto: protoc not found: apt-get install protobuf-compiler" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$root" && go build -o "$tmp/bin/" google.golang.org/protobuf/cmd/protoc-gen-go google.golang.org/grpc/cmd/protoc-gen-go-grpc)
out=$root/internal/flwrpb
if [ "${1:-}" = --check ]; then
  out=$tmp/out
  mkdir -p "$out"
fi
cd "$root/internal/flwrpb"
PATH=$tmp/bin:$PATH protoc --go_out="$out" --go_opt=paths=source_relative \
  --go-grpc_out="$out" --go-grpc_opt=paths=source_relative control.proto
PATH=$tmp/bin:$PATH protoc --go_out="$out" --go_opt=paths=source_relative federation.proto
if [ "${1:-}" = --check ]; then
  for f in control.pb.go control_grpc.pb.go federation.pb.go; do
    diff -u "$f" "$out/$f" || { echo "gen-proto: internal/flwrpb/$f is not what its .proto generates: run go generate ./internal/flwrpb" >&2; exit 1; }
  done
  exit 0
fi
echo "wrote internal/flwrpb/control.pb.go, control_grpc.pb.go and federation.pb.go (protoc $(protoc --version | cut -d' ' -f2))"
