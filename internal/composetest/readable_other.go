//go:build !linux

package composetest

import "testing"

// ReadableBy skips the test: reading as another user is checked on Linux.
func ReadableBy(t testing.TB, path string, uid int) bool {
	t.Helper()
	t.Skip("reading as another user is checked on Linux only")
	return false
}
