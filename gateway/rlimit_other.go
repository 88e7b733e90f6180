//go:build !unix

package gateway

// openFileLimit is unknown here: only the configured caps apply.
func openFileLimit() uint64 { return 0 }
