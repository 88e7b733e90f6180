//go:build linux || darwin || freebsd || openbsd || netbsd || dragonfly

package atomicfile

import (
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestWrite(t *testing.T) {
	for _, umask := range []int{0, 0o077} {
		old := syscall.Umask(umask)
		dir := t.TempDir()
		p := filepath.Join(dir, "key")
		require.NoError(t, Write(p, []byte("one"), 0o600, false))
		fi, err := os.Stat(p)
		require.NoError(t, err)
		assert.Equal(t, fs.FileMode(0o600), fi.Mode().Perm())
		require.NoError(t, Write(filepath.Join(dir, "pub"), []byte("x"), 0o644, false))
		fi, err = os.Stat(filepath.Join(dir, "pub"))
		require.NoError(t, err)
		assert.Equal(t, fs.FileMode(0o644), fi.Mode().Perm(), "umask %o does not change the mode", umask)

		err = Write(p, []byte("two"), 0o600, false)
		require.ErrorIs(t, err, fs.ErrExist)
		b, _ := os.ReadFile(p)
		assert.Equal(t, "one", string(b))
		require.NoError(t, Write(p, []byte("two"), 0o600, true))
		b, _ = os.ReadFile(p)
		assert.Equal(t, "two", string(b))
		assert.ElementsMatch(t, []string{"key", "pub"}, names(t, dir), "no temporary files left")
		syscall.Umask(old)
	}
}

func TestWriteNeverFollowsSymlinks(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim")
	require.NoError(t, os.WriteFile(victim, []byte("precious"), 0o644))
	link := filepath.Join(dir, "key")
	require.NoError(t, os.Symlink(victim, link))
	require.ErrorIs(t, Write(link, []byte("secret"), 0o600, false), fs.ErrExist)
	require.NoError(t, Write(link, []byte("secret"), 0o600, true))
	b, _ := os.ReadFile(victim)
	assert.Equal(t, "precious", string(b))
	fi, err := os.Lstat(link)
	require.NoError(t, err)
	assert.True(t, fi.Mode().IsRegular())
	// A folder in the way is never replaced.
	require.NoError(t, os.Mkdir(filepath.Join(dir, "d"), 0o700))
	assert.Error(t, Write(filepath.Join(dir, "d"), nil, 0o600, true))
}

// A folder swapped for a symbolic link after it was opened cannot redirect
// a write, nor the clean-up after a failed one.
func TestDirSurvivesASymlinkSwap(t *testing.T) {
	root := t.TempDir()
	keys := filepath.Join(root, "keys")
	attacker := filepath.Join(root, "attacker")
	require.NoError(t, os.Mkdir(keys, 0o700))
	require.NoError(t, os.Mkdir(attacker, 0o777))
	d := mustOpen(t, keys)
	moved := filepath.Join(root, "keys.real")
	require.NoError(t, os.Rename(keys, moved))
	require.NoError(t, os.Symlink(attacker, keys))
	require.NoError(t, d.Write("client_credentials_1", []byte("secret"), 0o600, false))
	b := &Batch{Dir: d}
	require.NoError(t, b.Add("client_credentials_2", []byte("secret"), 0o600))
	b.Abort()
	assert.Empty(t, names(t, attacker), "nothing written or removed through the link")
	assert.Equal(t, []string{"client_credentials_1"}, names(t, moved))
}

func TestOpenDirRefusesUnsafeFolders(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	root := t.TempDir()
	open := filepath.Join(root, "open")
	require.NoError(t, os.Mkdir(open, 0o777))
	_, err := OpenDir(open)
	require.ErrorIs(t, err, ErrUnsafeDir)
	assert.Contains(t, err.Error(), "other users can write to it (mode 0777)")
	require.NoError(t, os.Chmod(open, 0o755))
	d, err := OpenDir(open)
	require.NoError(t, err)
	d.Close()

	link := filepath.Join(root, "link")
	require.NoError(t, os.Symlink(open, link))
	_, err = OpenDir(link)
	require.ErrorIs(t, err, ErrUnsafeDir)
	assert.Contains(t, err.Error(), "symbolic link")
}

func TestWriteRefusesToReplaceDevicesAndFIFOs(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o600))
	err := Write(filepath.Join(dir, "fifo"), []byte("x"), 0o644, true)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "is a FIFO, not a regular file")
	err = Write("/dev/null", []byte("x"), 0o644, true)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "is a character device, not a regular file")
}

func TestMkdirPrivate(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	dir := filepath.Join(t.TempDir(), "a", "b")
	require.NoError(t, MkdirPrivate(dir))
	fi, err := os.Stat(dir)
	require.NoError(t, err)
	assert.Equal(t, fs.FileMode(0o700), fi.Mode().Perm())
	f := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(f, nil, 0o644))
	assert.ErrorIs(t, MkdirPrivate(f), syscall.ENOTDIR)
}

// TestErrorsNameTheFinalPath: a failure while writing the temporary file is
// reported against the path the caller asked for.
func TestErrorsNameTheFinalPath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing", "key")
	err := Write(path, []byte("x"), 0o600, false)
	var pe *fs.PathError
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, filepath.Dir(path), pe.Path, "the missing folder is named")

	d := mustOpen(t, filepath.Dir(filepath.Dir(path)))
	require.NoError(t, os.Mkdir(filepath.Dir(path), 0o500))
	sub, err := d.Sub("missing")
	require.NoError(t, err)
	defer sub.Close()
	if os.Geteuid() != 0 { // root writes in a read-only folder
		b := &Batch{Dir: sub}
		err = b.Add("key", []byte("x"), 0o600)
		require.ErrorAs(t, err, &pe)
		assert.Equal(t, path, pe.Path)
	}
}

// The rename of the BSDs, which have no rename that refuses to replace,
// tested here too.
func TestRenameByLink(t *testing.T) {
	testRenameNoReplace(t, (*Dir).renameByLink)
}
