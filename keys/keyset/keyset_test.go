package keyset_test

import (
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nodekeys/nodekeys/csvlist"
	"github.com/nodekeys/nodekeys/keys"
	"github.com/nodekeys/nodekeys/keys/keyset"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

var seed = []byte("nodekeys-golden-fixture-seed-v1!")

func readAll(t *testing.T, dir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		require.NoError(t, err)
		files[e.Name()] = string(b)
	}
	return files
}

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

func TestRefusesToOverwrite(t *testing.T) {
	dir := t.TempDir()
	_, err := keyset.Write(keyset.Options{Dir: dir, Count: 2})
	require.NoError(t, err)
	before := readAll(t, dir)
	for _, opts := range []keyset.Options{
		{Dir: dir, Count: 2},
		{Dir: dir, Count: 5},
		{Dir: dir, Count: 0}, // the CSV is in the way
	} {
		_, err = keyset.Write(opts)
		require.ErrorIs(t, err, fs.ErrExist)
		assert.Equal(t, before, readAll(t, dir), "a refusal changes nothing")
	}
	// Only the CSV in the way: still refused, named.
	require.NoError(t, os.Remove(filepath.Join(dir, "client_credentials_1")))
	require.NoError(t, os.Remove(filepath.Join(dir, "client_credentials_1.pub")))
	_, err = keyset.Write(keyset.Options{Dir: dir, Count: 1})
	var pe *fs.PathError
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, filepath.Join(dir, "client_public_keys.csv"), pe.Path)
}

func TestForceReplaces(t *testing.T) {
	dir := t.TempDir()
	a, err := keyset.Write(keyset.Options{Dir: dir, Count: 2})
	require.NoError(t, err)
	b, err := keyset.Write(keyset.Options{Dir: dir, Count: 2, Force: true})
	require.NoError(t, err)
	assert.NotEqual(t, a.Pairs[0].Fingerprint, b.Pairs[0].Fingerprint)
}

func TestAppend(t *testing.T) {
	dir := t.TempDir()
	first, err := keyset.Write(keyset.Options{Dir: dir, Count: 2})
	require.NoError(t, err)
	before := readAll(t, dir)
	res, err := keyset.Write(keyset.Options{Dir: dir, Count: 3, Append: true})
	require.NoError(t, err)
	require.Len(t, res.Pairs, 3)
	assert.Equal(t, 3, res.Pairs[0].Index)
	assert.Equal(t, 5, res.CSVKeys)
	after := readAll(t, dir)
	for name, content := range before {
		if name != "client_public_keys.csv" {
			assert.Equal(t, content, after[name], "append touches no existing key: %s", name)
		}
	}
	l, err := csvlist.ReadFile(filepath.Join(dir, "client_public_keys.csv"))
	require.NoError(t, err)
	require.Len(t, l.Entries, 5)
	assert.Equal(t, first.Pairs[0].Fingerprint, l.Entries[0].Key.Fingerprint())
	assert.Equal(t, res.Pairs[2].Fingerprint, l.Entries[4].Key.Fingerprint())

	// Without a CSV, append builds it from the .pub files.
	require.NoError(t, os.Remove(filepath.Join(dir, "client_public_keys.csv")))
	res, err = keyset.Write(keyset.Options{Dir: dir, Count: 1, Append: true})
	require.NoError(t, err)
	assert.Equal(t, 6, res.Pairs[0].Index)
	assert.Equal(t, 6, res.CSVKeys)
}

func TestAppendRefusesBrokenCSV(t *testing.T) {
	dir := t.TempDir()
	_, err := keyset.Write(keyset.Options{Dir: dir, Count: 1})
	require.NoError(t, err)
	csv := filepath.Join(dir, "client_public_keys.csv")
	require.NoError(t, os.WriteFile(csv, []byte("ssh-rsa AAAA\n"), 0o644))
	_, err = keyset.Write(keyset.Options{Dir: dir, Count: 1, Append: true})
	require.ErrorContains(t, err, "client_public_keys.csv:1:1: not an EC key")
	b, _ := os.ReadFile(csv)
	assert.Equal(t, "ssh-rsa AAAA\n", string(b))
	_, err = os.Stat(filepath.Join(dir, "client_credentials_2"))
	assert.ErrorIs(t, err, fs.ErrNotExist)
}

func TestServerKeyAndPrefix(t *testing.T) {
	dir := t.TempDir()
	res, err := keyset.Write(keyset.Options{Dir: dir, Count: 1, Prefix: "supernode_credentials", ServerKey: true})
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(dir, "supernode_credentials_1"), res.Pairs[0].Private)
	require.NotNil(t, res.Server)
	_, err = keys.ReadPrivateKey(filepath.Join(dir, "server_credentials"))
	require.NoError(t, err)
	l, err := csvlist.ReadFile(res.CSV)
	require.NoError(t, err)
	assert.Len(t, l.Entries, 1, "the server key is not a SuperNode key")

	_, err = keyset.Write(keyset.Options{Dir: dir, Prefix: "../evil"})
	assert.ErrorContains(t, err, "plain file name")
}

func TestSeededGolden(t *testing.T) {
	dir := t.TempDir()
	_, err := keyset.Write(keyset.Options{Dir: dir, Count: 3, Generator: keys.Generator{Seed: seed}, Workers: 3})
	require.NoError(t, err)
	got := readAll(t, dir)
	golden := filepath.Join("testdata", "golden")
	if *update {
		require.NoError(t, os.RemoveAll(golden))
		require.NoError(t, os.MkdirAll(golden, 0o755))
		for name, content := range got {
			require.NoError(t, os.WriteFile(filepath.Join(golden, name), []byte(content), 0o644))
		}
	}
	assert.Equal(t, readAll(t, golden), got)
	// The same seed in another order of work and another run: same bytes.
	dir2 := t.TempDir()
	_, err = keyset.Write(keyset.Options{Dir: dir2, Count: 3, Generator: keys.Generator{Seed: seed}, Workers: 1})
	require.NoError(t, err)
	assert.Equal(t, got, readAll(t, dir2))
	assert.True(t, strings.HasSuffix(got["client_public_keys.csv"], "\n"))
}

func TestOutputIsAFile(t *testing.T) {
	f := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(f, nil, 0o644))
	_, err := keyset.Write(keyset.Options{Dir: f, Count: 1})
	require.ErrorContains(t, err, "not a directory")
}

// A folder on a read-only file system (procfs here, read-only even for
// root) gets a clear error and nothing is written.
func TestReadOnlyFolder(t *testing.T) {
	_, err := keyset.Write(keyset.Options{Dir: "/proc/self", Count: 1})
	require.Error(t, err)
	assert.Regexp(t, `keyset: open /proc/self/.*: (permission denied|read-only file system|no such file or directory)`, err.Error())
	_, err = keyset.Write(keyset.Options{Dir: "/proc/nodekeys-new", Count: 1})
	require.Error(t, err)
}

func BenchmarkWrite100(b *testing.B) {
	for b.Loop() {
		dir := b.TempDir()
		if _, err := keyset.Write(keyset.Options{Dir: dir, Count: 100}); err != nil {
			b.Fatal(err)
		}
	}
}
