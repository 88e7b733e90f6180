//go:build !unix

package tokens

import "os"

// reloadSignals: Windows has no SIGHUP or SIGUSR1 to send a process, so
// Watch only looks at the file every interval.
var reloadSignals []os.Signal
