package atomicfile

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The tests in this file hold on every system; those of the guarantees
// that only Unix systems give are in atomicfile_unix_test.go.

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

// Lock waits for a lock another holder has, looking every 20 ms: it gives
// up at the first look past its timeout, and takes the lock at the first
// look after the holder lets go. On synctest's clock: exact, and no wall
// time spent.
func TestLock(t *testing.T) {
	dir := t.TempDir()
	a, b := mustOpen(t, dir), mustOpen(t, dir)
	synctest.Test(t, func(t *testing.T) {
		require.NoError(t, a.Lock(time.Second, nil))
		waited := false
		start := time.Now()
		err := b.Lock(50*time.Millisecond, func() { waited = true })
		require.ErrorContains(t, err, "another process has held it for 50ms")
		assert.True(t, waited)
		assert.Equal(t, 60*time.Millisecond, time.Since(start), "given up at the first look past 50 ms")

		start = time.Now()
		go func() { time.Sleep(30 * time.Millisecond); a.Unlock() }()
		require.NoError(t, b.Lock(5*time.Second, nil))
		assert.Equal(t, 40*time.Millisecond, time.Since(start), "taken at the first look after the release")
		b.Unlock()
	})
}

// RenameNoReplace moves a file or a folder, and replaces nothing: not a
// file, and not an empty folder, which rename(2) would replace.
func TestRenameNoReplace(t *testing.T) {
	testRenameNoReplace(t, (*Dir).RenameNoReplace)
}

func testRenameNoReplace(t *testing.T, rename func(d *Dir, old, new string) error) {
	dir := t.TempDir()
	d := mustOpen(t, dir)
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, name))
		require.NoError(t, err)
		return string(b)
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "a"), []byte("a"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "b"), []byte("b"), 0o600))
	require.ErrorIs(t, rename(d, "a", "b"), fs.ErrExist)
	assert.Equal(t, "a", read("a"))
	assert.Equal(t, "b", read("b"))
	require.NoError(t, rename(d, "a", "c"))
	assert.Equal(t, "a", read("c"))
	assert.ElementsMatch(t, []string{"b", "c"}, names(t, dir))

	require.NoError(t, os.Mkdir(filepath.Join(dir, "staging"), 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "staging", "key"), []byte("k"), 0o600))
	require.NoError(t, os.Mkdir(filepath.Join(dir, "empty"), 0o700))
	err := rename(d, "staging", "empty")
	require.ErrorIs(t, err, fs.ErrExist)
	assert.Contains(t, err.Error(), filepath.Join(dir, "empty"))
	assert.Empty(t, names(t, filepath.Join(dir, "empty")))
	require.ErrorIs(t, rename(d, "staging", "b"), fs.ErrExist)
	assert.Equal(t, "b", read("b"))
	require.NoError(t, rename(d, "staging", "keys"))
	assert.Equal(t, "k", read(filepath.Join("keys", "key")))
	assert.ElementsMatch(t, []string{"b", "c", "empty", "keys"}, names(t, dir))
}
