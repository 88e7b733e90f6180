package allowlist_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nodekeys/nodekeys/allowlist"
	"github.com/nodekeys/nodekeys/csvlist"
	"github.com/nodekeys/nodekeys/keys"
)

func newKey(t *testing.T) *keys.PublicKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	require.NoError(t, err)
	pk, err := keys.NewPublicKey(&k.PublicKey)
	require.NoError(t, err)
	return pk
}

// Concurrent edits of one allowlist take turns: each edit reads what the
// one before wrote, so no key is lost.
func TestEditTakesTurns(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "client_public_keys.csv")
	const n = 8
	ks := make([]*keys.PublicKey, n)
	for i := range ks {
		ks[i] = newKey(t)
	}
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			err := allowlist.Edit(path, allowlist.EditOptions{Create: true}, func(l *csvlist.List) ([]*keys.PublicKey, error) {
				return append(l.Keys(), ks[i]), nil
			})
			assert.NoError(t, err)
		})
	}
	wg.Wait()
	l, err := csvlist.ReadFile(path)
	require.NoError(t, err)
	assert.Len(t, l.Entries, n)
	for _, k := range ks {
		assert.GreaterOrEqual(t, l.Index(k), 0)
	}
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o644), fi.Mode().Perm())
}

// An edit that fails writes nothing; a list that does not parse is not
// edited, and says why as csvlist.Problems; a missing file is an error
// unless Create; a symbolic link is written through, its target keeping
// its mode.
func TestEditRefuses(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "list.csv")
	a, b := newKey(t), newKey(t)
	require.NoError(t, os.WriteFile(path, csvlist.Marshal([]*keys.PublicKey{a}), 0o640))
	before, _ := os.ReadFile(path)
	boom := errors.New("boom")
	err := allowlist.Edit(path, allowlist.EditOptions{}, func(l *csvlist.List) ([]*keys.PublicKey, error) { return nil, boom })
	assert.ErrorIs(t, err, boom)
	after, _ := os.ReadFile(path)
	assert.Equal(t, before, after)

	bad := filepath.Join(dir, "bad.csv")
	require.NoError(t, os.WriteFile(bad, []byte("ssh-rsa AAAA\n"), 0o644))
	err = allowlist.Edit(bad, allowlist.EditOptions{}, func(l *csvlist.List) ([]*keys.PublicKey, error) { return l.Keys(), nil })
	var probs csvlist.Problems
	assert.ErrorAs(t, err, &probs)

	err = allowlist.Edit(filepath.Join(dir, "missing.csv"), allowlist.EditOptions{}, func(l *csvlist.List) ([]*keys.PublicKey, error) { return nil, nil })
	assert.ErrorIs(t, err, os.ErrNotExist)

	link := filepath.Join(dir, "link.csv")
	require.NoError(t, os.Symlink(path, link))
	require.NoError(t, allowlist.Edit(link, allowlist.EditOptions{}, func(l *csvlist.List) ([]*keys.PublicKey, error) {
		assert.Equal(t, link, l.File, "messages name the path given")
		return append(l.Keys(), b), nil
	}))
	fi, err := os.Lstat(link)
	require.NoError(t, err)
	assert.NotZero(t, fi.Mode()&os.ModeSymlink, "the link stays a link")
	fi, err = os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o640), fi.Mode().Perm())
	l, err := csvlist.ReadFile(path)
	require.NoError(t, err)
	assert.Len(t, l.Entries, 2)
}
