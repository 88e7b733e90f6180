package owners_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nodekeys/nodekeys/gateway/owners"
)

func TestBoltKeepsOwnersAcrossReopen(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "state.db")
	require.NoError(t, owners.Create(path))
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	assert.Error(t, owners.Create(path), "never replaces a file")

	ctx := context.Background()
	s, err := owners.Open(path, false)
	require.NoError(t, err)
	at := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	alice := owners.Owner{Subject: "alice", Name: "Alice", At: at}
	require.NoError(t, s.SetOwner(ctx, owners.Runs, 7, alice))
	require.NoError(t, s.SetOwner(ctx, owners.Runs, 7, alice), "the same owner again is no change")
	assert.ErrorIs(t, s.SetOwner(ctx, owners.Runs, 7, owners.Owner{Subject: "bob"}), owners.ErrOwned)
	require.NoError(t, s.SetOwner(ctx, owners.Nodes, 7, owners.Owner{Subject: "bob", At: at}))

	_, err = owners.Open(path, true)
	assert.ErrorContains(t, err, "in use by another process")
	require.NoError(t, s.Close())

	s, err = owners.Open(path, false)
	require.NoError(t, err)
	defer s.Close()
	got, err := s.Owners(ctx, owners.Runs, []uint64{7, 8})
	require.NoError(t, err)
	assert.Equal(t, map[uint64]owners.Owner{7: alice}, got)
	all, err := s.All(ctx, owners.Nodes)
	require.NoError(t, err)
	assert.Equal(t, "bob", all[7].Subject)
}

func TestBoltRefusesMissingAndDamagedFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, err := owners.Open(filepath.Join(dir, "gone.db"), false)
	assert.ErrorIs(t, err, owners.ErrNotExist)
	assert.ErrorContains(t, err, "gone.db")
	_, err = os.Stat(filepath.Join(dir, "gone.db"))
	assert.True(t, os.IsNotExist(err), "Open never creates")

	good := filepath.Join(dir, "good.db")
	require.NoError(t, owners.Create(good))
	s, err := owners.Open(good, false)
	require.NoError(t, err)
	for i := range uint64(500) {
		require.NoError(t, s.SetOwner(context.Background(), owners.Runs, i, owners.Owner{Subject: "alice"}))
	}
	require.NoError(t, s.Close())
	b, err := os.ReadFile(good)
	require.NoError(t, err)

	damage := map[string][]byte{
		"garbage":   []byte("this is not a database\n"),
		"empty":     {},
		"truncated": b[:len(b)/3],
		"zeroed meta": func() []byte {
			c := append([]byte(nil), b...)
			clear(c[:8192]) // both meta pages
			return c
		}(),
		"flipped page": func() []byte {
			c := append([]byte(nil), b...)
			for i := 8192 + 4096; i < len(c); i += 97 {
				c[i] ^= 0xff
			}
			return c
		}(),
	}
	for name, data := range damage {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, data, 0o600))
		_, err := owners.Open(p, false)
		require.Error(t, err, name)
		assert.Contains(t, err.Error(), p, name)
	}
	_, err = owners.Open(dir, false)
	assert.ErrorContains(t, err, "not a regular file")
}
