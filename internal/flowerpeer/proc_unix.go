//go:build unix

package flowerpeer

import (
	"os"
	"os/exec"
	"syscall"
)

// ownGroup puts cmd in a process group of its own, so that the helpers it
// starts (flower-superexec, flwr-serverapp, flwr-clientapp) end with it.
func ownGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	parentDeath(cmd.SysProcAttr)
}

// killGroup kills p's process group.
func killGroup(p *os.Process) {
	if p != nil {
		syscall.Kill(-p.Pid, syscall.SIGKILL)
	}
}
