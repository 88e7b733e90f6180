package gateway

import (
	"crypto/tls"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nodekeys/nodekeys/certs"
	"github.com/nodekeys/nodekeys/internal/syncbuf"
)

// The served certificate follows its files: a pair replaced by atomic
// renames is seen at the first handshake after the interval, even with the
// same sizes and modification times (the inode tells), and not before; a
// pair that does not load leaves the old one served.
func TestCertReloaderSeesReplacedFiles(t *testing.T) {
	t.Parallel()
	a, err := certs.Write(certs.Options{Dir: filepath.Join(t.TempDir(), "a")})
	require.NoError(t, err)
	b, err := certs.Write(certs.Options{Dir: filepath.Join(t.TempDir(), "b")})
	require.NoError(t, err)
	read := func(p string) []byte {
		data, err := os.ReadFile(p)
		require.NoError(t, err)
		return data
	}
	// Pad the shorter of each pair (PEM allows text after the block) so
	// that only the inode differs.
	same := func(x, y []byte) ([]byte, []byte) {
		for len(x) < len(y) {
			x = append(x, '\n')
		}
		for len(y) < len(x) {
			y = append(y, '\n')
		}
		return x, y
	}
	certA, certB := same(read(a.ServerCert), read(b.ServerCert))
	keyA, keyB := same(read(a.ServerKey), read(b.ServerKey))

	dir := t.TempDir()
	certPath, keyPath := filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key")
	require.NoError(t, os.WriteFile(certPath, certA, 0o644))
	require.NoError(t, os.WriteFile(keyPath, keyA, 0o600))
	mtime := time.Now().Add(-time.Hour).Truncate(time.Second)
	replace := func(p string, data []byte) {
		tmp := p + ".tmp"
		require.NoError(t, os.WriteFile(tmp, data, 0o600))
		require.NoError(t, os.Chtimes(tmp, mtime, mtime))
		require.NoError(t, os.Rename(tmp, p))
	}
	replace(certPath, certA)
	replace(keyPath, keyA)
	serial := func(c *tls.Certificate) string { return c.Leaf.SerialNumber.String() }
	wantA, wantB := serialOf(t, a.ServerCert), serialOf(t, b.ServerCert)

	synctest.Test(t, func(t *testing.T) {
		logs := &syncbuf.Buffer{}
		r, err := newCertReloader(certPath, keyPath, slog.New(slog.NewTextHandler(logs, nil)), nil)
		require.NoError(t, err)
		r.interval = 10 * time.Second
		get := func() string {
			c, err := r.get(nil)
			require.NoError(t, err)
			return serial(c)
		}
		require.Equal(t, wantA, get())
		time.Sleep(11 * time.Second)
		require.Equal(t, wantA, get()) // a look: nothing changed; the next is 10 s on

		replace(certPath, certB)
		replace(keyPath, keyB)
		time.Sleep(5 * time.Second)
		assert.Equal(t, wantA, get(), "not before the interval")
		time.Sleep(6 * time.Second)
		assert.Equal(t, wantB, get(), "replaced files, same size and time")

		// A certificate without its key: the old pair stays.
		replace(certPath, certA)
		time.Sleep(11 * time.Second)
		assert.Equal(t, wantB, get())
		assert.Contains(t, logs.String(), "server certificate reload failed; the old one stays")
	})
}

func serialOf(t *testing.T, path string) string {
	t.Helper()
	c, err := certs.ReadCertificate(path)
	require.NoError(t, err)
	return c.SerialNumber.String()
}
