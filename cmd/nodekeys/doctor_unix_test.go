//go:build unix

package main

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A folder or file the user cannot read is an error that says so, with the
// fix, never an all-clear. Root reads anything, so as root the command
// runs as nobody.
func TestDoctorUnreadable(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	require.Equal(t, 0, nk(t, dir, "", "init", "-q").code)
	require.NoError(t, os.Chmod(filepath.Join(dir, "keys"), 0o000))
	require.NoError(t, os.Chmod(filepath.Join(dir, "certificates/server.pem"), 0o000))
	t.Cleanup(func() { os.Chmod(filepath.Join(dir, "keys"), 0o755) })

	run := func(args ...string) result {
		cmd := exec.Command(bin, args...)
		cmd.Dir = dir
		if os.Geteuid() == 0 {
			// nobody must reach the binary and the folder.
			exe := filepath.Join(t.TempDir(), "nodekeys")
			require.NoError(t, copyExecutable(bin, exe))
			for _, d := range []string{filepath.Dir(exe), filepath.Dir(filepath.Dir(exe)), dir, filepath.Dir(dir)} {
				require.NoError(t, os.Chmod(d, 0o755))
			}
			cmd.Path, cmd.Args[0] = exe, exe
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		}
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else {
			require.NoError(t, err)
		}
		return result{out.String(), errb.String(), code}
	}
	r := run("doctor", "keys")
	assert.Equal(t, 1, r.code, r.stdout+r.stderr)
	assert.Contains(t, r.stdout, "error   keys: cannot list this folder: permission denied\n        fix: let this user read it (ls -ld keys; chmod u+rx, or run as its owner)\n")
	r = run("doctor", "certificates/server.pem")
	assert.Equal(t, 1, r.code, r.stdout+r.stderr)
	assert.Contains(t, r.stdout, "error   certificates/server.pem: cannot read it: permission denied\n")
}

// copyExecutable links (or else copies) the file at from to to.
func copyExecutable(from, to string) error {
	if real, err := filepath.EvalSymlinks(from); err == nil && os.Link(real, to) == nil {
		return nil
	}
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
