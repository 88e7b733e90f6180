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

func TestBatch(t *testing.T) {
	dir := t.TempDir()
	b := &Batch{}
	require.NoError(t, b.Add(filepath.Join(dir, "a"), []byte("a"), 0o600))
	require.NoError(t, b.Add(filepath.Join(dir, "b"), []byte("b"), 0o644))
	_, err := os.Stat(filepath.Join(dir, "a"))
	assert.ErrorIs(t, err, fs.ErrNotExist, "nothing lands before Commit")
	require.NoError(t, b.Commit())
	assert.ElementsMatch(t, []string{"a", "b"}, names(t, dir))

	// Without Overwrite, Commit stops at a file in the way and cleans up.
	b = &Batch{}
	require.NoError(t, b.Add(filepath.Join(dir, "c"), []byte("c"), 0o600))
	require.NoError(t, b.Add(filepath.Join(dir, "a"), []byte("new"), 0o600))
	require.NoError(t, b.Add(filepath.Join(dir, "d"), []byte("d"), 0o600))
	require.ErrorIs(t, b.Commit(), fs.ErrExist)
	got, _ := os.ReadFile(filepath.Join(dir, "a"))
	assert.Equal(t, "a", string(got))
	assert.ElementsMatch(t, []string{"a", "b", "c"}, names(t, dir), "temporary files removed")

	// Abort leaves nothing.
	b = &Batch{}
	require.NoError(t, b.Add(filepath.Join(dir, "e"), []byte("e"), 0o600))
	b.Abort()
	assert.ElementsMatch(t, []string{"a", "b", "c"}, names(t, dir))
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
	assert.Equal(t, path, pe.Path)

	b := &Batch{}
	err = b.Add(path, []byte("x"), 0o600)
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, path, pe.Path)
}
