//go:build !unix

package flowerpeer

import (
	"os"
	"os/exec"
)

func ownGroup(*exec.Cmd) {}

func killGroup(p *os.Process) {
	if p != nil {
		p.Kill()
	}
}
