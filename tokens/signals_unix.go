//go:build unix

package tokens

import (
	"os"
	"syscall"
)

// reloadSignals make Watch reload the file: SIGHUP, and SIGUSR1 as
// ai4flwr's token interceptor sends.
var reloadSignals = []os.Signal{syscall.SIGHUP, syscall.SIGUSR1}
