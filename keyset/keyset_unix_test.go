//go:build unix

package keyset_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nodekeys/nodekeys/csvlist"
	"github.com/nodekeys/nodekeys/keys"
	"github.com/nodekeys/nodekeys/keyset"
)

func TestWriteDefaults(t *testing.T) {
	// A permissive umask must not loosen the modes.
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	dir := filepath.Join(t.TempDir(), "keys")
	res, err := keyset.Write(keyset.Options{Dir: dir, Count: 3})
	require.NoError(t, err)
	require.Len(t, res.Pairs, 3)

	fi, err := os.Stat(dir)
	require.NoError(t, err)
	assert.Equal(t, fs.FileMode(0o700), fi.Mode().Perm())
	var ks []*keys.PublicKey
	for i, p := range res.Pairs {
		assert.Equal(t, filepath.Join(dir, "client_credentials_"+string(rune('1'+i))), p.Private)
		fi, err := os.Stat(p.Private)
		require.NoError(t, err)
		assert.Equal(t, fs.FileMode(0o600), fi.Mode().Perm())
		priv, err := keys.ReadPrivateKey(p.Private)
		require.NoError(t, err)
		pub, err := keys.ReadPublicKey(p.Public)
		require.NoError(t, err)
		assert.True(t, priv.PublicKey.Equal(pub.Key))
		assert.Equal(t, pub.Fingerprint(), p.Fingerprint)
		ks = append(ks, pub)
	}
	csv, err := os.ReadFile(filepath.Join(dir, "client_public_keys.csv"))
	require.NoError(t, err)
	assert.Equal(t, string(csvlist.Marshal(ks)), string(csv))
	assert.Len(t, readAll(t, dir), 7, "no stray temporary files")
}

// The output folder is opened once, never through a symbolic link, and
// refused when others can write to it; a device or FIFO is never replaced.
func TestUnsafeOutputs(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	root := t.TempDir()
	open := filepath.Join(root, "open")
	require.NoError(t, os.Mkdir(open, 0o777))
	_, err := keyset.Write(keyset.Options{Dir: open, Count: 1})
	require.ErrorContains(t, err, "other users can write to it (mode 0777)")

	real := filepath.Join(root, "real")
	require.NoError(t, os.Mkdir(real, 0o700))
	link := filepath.Join(root, "link")
	require.NoError(t, os.Symlink(real, link))
	_, err = keyset.Write(keyset.Options{Dir: link, Count: 1})
	require.ErrorContains(t, err, "symbolic link")
	ents, _ := os.ReadDir(real)
	assert.Empty(t, ents)

	_, err = keyset.Write(keyset.Options{Dir: filepath.Join(root, "k"), Count: 1, CSV: "/dev/null", Force: true})
	require.ErrorContains(t, err, "character device, not a regular file")
	fifo := filepath.Join(root, "fifo")
	require.NoError(t, syscall.Mkfifo(fifo, 0o600))
	_, err = keyset.Write(keyset.Options{Dir: filepath.Join(root, "k2"), Count: 1, CSV: fifo, Force: true})
	require.Error(t, err)
	_, err = keyset.Write(keyset.Options{Dir: fifo, Count: 1, Force: true})
	require.ErrorContains(t, err, "is a FIFO, not a folder")
}
