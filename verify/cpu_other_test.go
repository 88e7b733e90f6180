//go:build !unix

package verify_test

import "time"

// cpuTime is 0 where getrusage is not available: no CPU figure.
func cpuTime() time.Duration { return 0 }
