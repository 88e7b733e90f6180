//go:build unix

package certs_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nodekeys/nodekeys/certs"
)

func TestPermissionsUnderOpenUmask(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	dir := filepath.Join(t.TempDir(), "certificates")
	res := write(t, certs.Options{Dir: dir})
	for f, want := range map[string]fs.FileMode{dir: 0o700, res.CAKey: 0o600, res.ServerKey: 0o600, res.CACert: 0o644, res.ServerCert: 0o644} {
		fi, err := os.Stat(f)
		require.NoError(t, err)
		assert.Equal(t, want, fi.Mode().Perm(), f)
	}
}
