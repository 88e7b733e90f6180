package atomicfile

import (
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func names(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

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

func mustOpen(t *testing.T, dir string) *Dir {
	t.Helper()
	d, err := OpenDir(dir)
	require.NoError(t, err)
	t.Cleanup(func() { d.Close() })
	return d
}

func TestBatch(t *testing.T) {
	dir := t.TempDir()
	d := mustOpen(t, dir)
	b := &Batch{Dir: d}
	require.NoError(t, b.Add("a", []byte("a"), 0o600))
	require.NoError(t, b.Add("b", []byte("b"), 0o644))
	_, err := os.Stat(filepath.Join(dir, "a"))
	assert.ErrorIs(t, err, fs.ErrNotExist, "nothing lands before Commit")
	require.NoError(t, b.Commit())
	assert.ElementsMatch(t, []string{"a", "b"}, names(t, dir))

	// Without Overwrite, Add refuses a name in the way; Commit stops at one
	// that appeared since, and cleans up.
	b = &Batch{Dir: d}
	require.ErrorIs(t, b.Add("a", []byte("new"), 0o600), fs.ErrExist)
	require.NoError(t, b.Add("c", []byte("c"), 0o600))
	require.NoError(t, b.Add("d", []byte("d"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "d"), []byte("theirs"), 0o600))
	require.ErrorIs(t, b.Commit(), fs.ErrExist)
	got, _ := os.ReadFile(filepath.Join(dir, "d"))
	assert.Equal(t, "theirs", string(got))
	assert.ElementsMatch(t, []string{"a", "b", "c", "d"}, names(t, dir), "temporary files removed")

	// Abort leaves nothing.
	b = &Batch{Dir: d}
	require.NoError(t, b.Add("e", []byte("e"), 0o600))
	b.Abort()
	assert.ElementsMatch(t, []string{"a", "b", "c", "d"}, names(t, dir))
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

func TestLock(t *testing.T) {
	dir := t.TempDir()
	a, b := mustOpen(t, dir), mustOpen(t, dir)
	require.NoError(t, a.Lock(time.Second, nil))
	waited := false
	err := b.Lock(50*time.Millisecond, func() { waited = true })
	require.Error(t, err)
	assert.True(t, waited)
	unlocked := make(chan struct{})
	go func() { time.Sleep(100 * time.Millisecond); a.Unlock(); close(unlocked) }()
	require.NoError(t, b.Lock(5*time.Second, nil))
	<-unlocked
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
