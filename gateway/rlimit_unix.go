//go:build unix

package gateway

import "syscall"

// openFileLimit returns the process's soft limit on open files, which Go
// has already raised to the hard limit at start (Go 1.19 and later), or 0
// if it cannot be read.
func openFileLimit() uint64 {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0
	}
	return uint64(l.Cur) // int64 on the BSDs
}
