//go:build unix

package safefile

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestReadRegular(t *testing.T) {
	dir := t.TempDir()
	small := filepath.Join(dir, "small")
	require.NoError(t, os.WriteFile(small, []byte("hello"), 0o600))
	b, err := ReadRegular(small, 5)
	require.NoError(t, err)
	assert.Equal(t, "hello", string(b))

	_, err = ReadRegular(small, 4)
	assert.ErrorIs(t, err, ErrTooLarge)
	assert.Contains(t, err.Error(), small)

	_, err = ReadRegular(dir, 10)
	assert.ErrorIs(t, err, ErrNotRegular)
	assert.Contains(t, err.Error(), "a folder")

	// A FIFO with no writer would block a plain open forever.
	fifo := filepath.Join(dir, "fifo")
	require.NoError(t, syscall.Mkfifo(fifo, 0o600))
	done := make(chan error, 1)
	go func() { _, err := ReadRegular(fifo, 10); done <- err }()
	select {
	case err := <-done:
		assert.ErrorIs(t, err, ErrNotRegular)
		assert.Contains(t, err.Error(), "a FIFO")
	case <-time.After(5 * time.Second):
		t.Fatal("reading a FIFO blocked")
	}

	// A symbolic link to a device: stat says size 0; the read is refused.
	link := filepath.Join(dir, "zero")
	require.NoError(t, os.Symlink("/dev/zero", link))
	_, err = ReadRegular(link, 1<<20)
	assert.ErrorIs(t, err, ErrNotRegular)
	assert.Contains(t, err.Error(), "character device")

	sock := filepath.Join(dir, "sock")
	ln, err := net.Listen("unix", sock)
	require.NoError(t, err)
	defer ln.Close()
	_, err = ReadRegular(sock, 10)
	assert.True(t, errors.Is(err, ErrNotRegular) || errors.Is(err, syscall.ENXIO), "%v", err)
}
