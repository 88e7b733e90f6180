package composetest

import (
	"os"
	"os/exec"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// ReadableBy reports whether user uid (with group uid and no others) can
// read the file at path when it is mounted into a container: only the
// file's own owner, mode and ACL count, not the folders on its host path,
// as with a bind mount. The reader is `cat`, run as that user on an O_PATH
// descriptor of the file. It needs root; without it the test is skipped.
func ReadableBy(t testing.TB, path string, uid int) bool {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("reading as another user needs root")
	}
	fd, err := unix.Open(path, unix.O_PATH|unix.O_CLOEXEC, 0)
	require.NoError(t, err)
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	cmd := exec.Command("cat", "/proc/self/fd/3")
	cmd.ExtraFiles = []*os.File{f}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid), Groups: []uint32{}}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		require.Contains(t, string(out), "Permission denied", "cat as uid %d", uid)
		return false
	}
	return true
}
