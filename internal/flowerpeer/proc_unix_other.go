//go:build unix && !linux

package flowerpeer

import "syscall"

func parentDeath(*syscall.SysProcAttr) {}
