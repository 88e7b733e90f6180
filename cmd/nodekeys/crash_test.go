package main

import (
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nodekeys/nodekeys/certs"
	"github.com/nodekeys/nodekeys/csvlist"
	"github.com/nodekeys/nodekeys/internal/peer"
	"github.com/nodekeys/nodekeys/keys"
)

// killAfter starts nodekeys and SIGKILLs it after d.
func killAfter(t *testing.T, dir string, d time.Duration, args ...string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	require.NoError(t, cmd.Start())
	time.Sleep(d)
	cmd.Process.Kill()
	cmd.Wait()
}

// checkKeyFolder asserts that every visible file in dir is whole and valid
// and that the CSV names only keys whose files are there.
func checkKeyFolder(t *testing.T, dir string) int {
	t.Helper()
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	pubs := map[string]bool{}
	n := 0
	for _, e := range ents {
		name := e.Name()
		p := filepath.Join(dir, name)
		switch {
		case strings.HasPrefix(name, "."):
			// A temporary file of the killed run: never a final name.
		case strings.HasSuffix(name, ".csv"):
		case strings.HasSuffix(name, ".pub"):
			k, err := keys.ReadPublicKey(p)
			require.NoError(t, err, "a .pub left whole")
			priv, err := keys.ReadPrivateKey(strings.TrimSuffix(p, ".pub"))
			require.NoError(t, err, "a .pub never stands without its private key")
			assert.True(t, priv.PublicKey.Equal(k.Key))
			pubs[k.Fingerprint()] = true
			n++
		default:
			_, err := keys.ReadPrivateKey(p)
			require.NoError(t, err, "a private key left whole: %s", name)
		}
	}
	if l, err := csvlist.ReadFile(filepath.Join(dir, "client_public_keys.csv")); err == nil {
		for _, e := range l.Entries {
			assert.True(t, pubs[e.Key.Fingerprint()], "the CSV names a key whose files exist")
		}
	} else {
		require.ErrorIs(t, err, os.ErrNotExist)
	}
	return n
}

func TestKeygenSurvivesSIGKILL(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("kills a few hundred ms of keygen runs")
	}
	trials := 1
	if peer.Long() {
		trials = 6
	}
	for trial := range trials {
		dir := t.TempDir()
		// A folder with keys that must survive.
		require.Equal(t, 0, nk(t, dir, "", "keygen", "--clients", "3", "-q").code)
		before := snapshot(t, filepath.Join(dir, "keys"))
		d := time.Duration(rand.IntN(200)) * time.Millisecond
		killAfter(t, dir, d, "keygen", "--append", "--clients", "800", "-q")
		killAfter(t, dir, d, "keygen", "--clients", "800", "-q", "--out", "fresh")

		for p, content := range before {
			got, err := os.ReadFile(p)
			require.NoError(t, err, "trial %d: an existing key was lost", trial)
			if !strings.HasSuffix(p, ".csv") {
				assert.Equal(t, content, string(got))
			}
		}
		n := checkKeyFolder(t, filepath.Join(dir, "keys"))
		assert.GreaterOrEqual(t, n, 3)
		// A new folder appears whole or not at all.
		if _, err := os.Stat(filepath.Join(dir, "fresh")); err == nil {
			assert.Equal(t, 800, checkKeyFolder(t, filepath.Join(dir, "fresh")))
		}
	}
}

// certgen killed at random points: the CA is never lost or changed, and
// every file left is whole.
func TestCertgenSurvivesSIGKILL(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("kills a few certgen runs")
	}
	dir := t.TempDir()
	require.Equal(t, 0, nk(t, dir, "", "certgen").code)
	ca := snapshot(t, filepath.Join(dir, "certificates"))
	rounds := 4
	if peer.Long() {
		rounds = 15
	}
	for range rounds {
		killAfter(t, dir, time.Duration(rand.IntN(40))*time.Millisecond, "certgen", "--force", "--key-type", "ecdsa-p256")
		killAfter(t, dir, time.Duration(rand.IntN(40))*time.Millisecond, "certgen", "--out", "fresh", "--new-ca", "--force")
		for _, sub := range []string{"certificates", "fresh"} {
			for _, f := range []string{"ca.crt", "server.pem"} {
				p := filepath.Join(dir, sub, f)
				if _, err := os.Stat(p); err == nil {
					_, err := certs.ReadCertificate(p)
					require.NoError(t, err, "a whole certificate: %s", p)
				}
			}
			for _, f := range []string{"ca.key", "server.key"} {
				p := filepath.Join(dir, sub, f)
				if _, err := os.Stat(p); err == nil {
					_, err := certs.ReadKey(p)
					require.NoError(t, err, "a whole key: %s", p)
				}
			}
		}
		for _, f := range []string{"ca.crt", "ca.key"} {
			p := filepath.Join(dir, "certificates", f)
			b, err := os.ReadFile(p)
			require.NoError(t, err)
			assert.Equal(t, ca[p], string(b), "the CA is kept")
		}
	}
}

// After a killed run, the next keygen removes what it left behind and says
// so in one line.
func TestKeygenCleansAfterSIGKILL(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	require.Equal(t, 0, nk(t, dir, "", "keygen", "--clients", "1", "-q").code)
	killAfter(t, dir, 150*time.Millisecond, "keygen", "--append", "--clients", "200000", "-q")
	killAfter(t, dir, 150*time.Millisecond, "keygen", "--clients", "200000", "-q", "--out", "fresh")
	r := nk(t, dir, "", "keygen", "--append", "--clients", "1", "-q")
	require.Equal(t, 0, r.code, r.stderr)
	assert.LessOrEqual(t, strings.Count(r.stderr, "\n"), 1, r.stderr)
	ents, _ := os.ReadDir(filepath.Join(dir, "keys"))
	for _, e := range ents {
		assert.False(t, strings.HasPrefix(e.Name(), "."), "left: %s", e.Name())
	}
	r = nk(t, dir, "", "keygen", "--clients", "1", "-q", "--out", "fresh")
	require.Equal(t, 0, r.code, r.stderr)
	ents, _ = os.ReadDir(dir)
	for _, e := range ents {
		assert.False(t, strings.HasPrefix(e.Name(), ".fresh.tmp-"), "left: %s", e.Name())
	}
}

// SIGINT or SIGTERM during a large keygen removes what it wrote: no
// temporary file, no staging folder, the folder as it was.
func TestKeygenCleansUpOnSignals(t *testing.T) {
	t.Parallel()
	// SIGINT on an append into the folder, SIGTERM on a new folder.
	for _, tc := range []struct {
		sig  os.Signal
		args []string
	}{
		{os.Interrupt, []string{"keygen", "--append", "--clients", "50000", "-q"}},
		{syscall.SIGTERM, []string{"keygen", "--out", "fresh", "--clients", "50000", "-q"}},
	} {
		sig, args := tc.sig, tc.args
		dir := t.TempDir()
		require.Equal(t, 0, nk(t, dir, "", "keygen", "--clients", "2", "-q").code)
		before := snapshot(t, dir)
		{
			cmd := exec.Command(bin, args...)
			cmd.Dir = dir
			var stderr strings.Builder
			cmd.Stderr = &stderr
			require.NoError(t, cmd.Start())
			// Signal once it has written something: a staging folder beside
			// keys/, or temporary files in it.
			require.Eventually(t, func() bool {
				a, _ := filepath.Glob(filepath.Join(dir, ".fresh.tmp-*", "client_credentials_*"))
				b, _ := filepath.Glob(filepath.Join(dir, "keys", ".client_credentials_*.tmp-*"))
				return len(a)+len(b) > 20
			}, 10*time.Second, 5*time.Millisecond)
			require.NoError(t, cmd.Process.Signal(sig))
			err := cmd.Wait()
			require.Error(t, err, "an interrupted keygen fails")
			assert.Contains(t, stderr.String(), "interrupted")
			if sig == os.Interrupt {
				assert.Equal(t, 130, cmd.ProcessState.ExitCode(), "the shell's code for SIGINT")
			}
		}
		assert.Equal(t, before, snapshot(t, dir), "%v: nothing left behind", sig)
		ents, _ := os.ReadDir(dir)
		assert.Len(t, ents, 1, "no staging folder")
	}
}
