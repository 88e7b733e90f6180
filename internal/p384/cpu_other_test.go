//go:build !unix

package p384

import "time"

// cpuTime is 0 where getrusage is not available: no CPU figure.
func cpuTime() time.Duration { return 0 }
