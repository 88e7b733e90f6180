//go:build unix

package verify_test

import (
	"syscall"
	"time"
)

// cpuTime returns the process's CPU time so far, user and system: a
// benchmark reports it per operation beside the wall time, since on a
// machine that others load too it is the figure that compares.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
