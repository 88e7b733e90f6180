// Package flwrpb holds the Go types of the Flower Control API messages
// nodekeys reads and writes, generated from control.proto (written from
// the field numbers in docs/protocol.md) by scripts/gen-proto.sh.
package flwrpb
