package flowerpeer

import "syscall"

// parentDeath kills the process if the test binary dies first (Flower's
// helpers watch their parent's pid and follow).
func parentDeath(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGKILL }
