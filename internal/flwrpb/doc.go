// Package flwrpb holds the Go types of the Flower Control API messages
// nodekeys reads and writes, and the client stub of the Control methods it
// calls (ControlClient), generated from control.proto (written from the
// field numbers in docs/protocol.md) by scripts/gen-proto.sh with the
// generator versions go.mod pins.
package flwrpb

//go:generate bash ../../scripts/gen-proto.sh
