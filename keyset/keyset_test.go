package keyset_test

import (
	"context"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nodekeys/nodekeys/csvlist"
	"github.com/nodekeys/nodekeys/keys"
	"github.com/nodekeys/nodekeys/keyset"
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

	// The CSV is the allowlist: without one, append starts a new one with
	// the new key only, and says which pairs it does not name.
	require.NoError(t, os.Remove(filepath.Join(dir, "client_public_keys.csv")))
	res, err = keyset.Write(keyset.Options{Dir: dir, Count: 1, Append: true})
	require.NoError(t, err)
	assert.Equal(t, 6, res.Pairs[0].Index)
	assert.Equal(t, 1, res.CSVKeys)
	assert.Len(t, res.NotInCSV, 5)
}

// A key removed from the allowlist is not put back by a later append, nor
// by a --force run; --force says which keys left.
func TestRemovedKeyStaysRemoved(t *testing.T) {
	dir := t.TempDir()
	first, err := keyset.Write(keyset.Options{Dir: dir, Count: 3})
	require.NoError(t, err)
	csv := filepath.Join(dir, "client_public_keys.csv")
	l, err := csvlist.ReadFile(csv)
	require.NoError(t, err)
	kept := []*keys.PublicKey{l.Entries[0].Key, l.Entries[2].Key} // node 2 removed
	require.NoError(t, os.WriteFile(csv, csvlist.Marshal(kept), 0o644))

	res, err := keyset.Write(keyset.Options{Dir: dir, Count: 1, Append: true})
	require.NoError(t, err)
	l, err = csvlist.ReadFile(csv)
	require.NoError(t, err)
	var fps []string
	for _, e := range l.Entries {
		fps = append(fps, e.Key.Fingerprint())
	}
	assert.Equal(t, []string{first.Pairs[0].Fingerprint, first.Pairs[2].Fingerprint, res.Pairs[0].Fingerprint}, fps)
	assert.Equal(t, []string{first.Pairs[1].Public}, res.NotInCSV, "said once")

	res, err = keyset.Write(keyset.Options{Dir: dir, Count: 2, Force: true})
	require.NoError(t, err)
	assert.Equal(t, 2, res.CSVKeys)
	assert.ElementsMatch(t, []string{first.Pairs[0].Fingerprint, first.Pairs[2].Fingerprint, fps[2]}, res.Dropped)
}

// Concurrent appenders take turns: every key any of them reports is in the
// CSV and on disk, and no pair lacks its .pub.
func TestConcurrentAppenders(t *testing.T) {
	dir := t.TempDir()
	_, err := keyset.Write(keyset.Options{Dir: dir, Count: 1})
	require.NoError(t, err)
	const writers = 20
	results := make(chan *keyset.Result, writers)
	errs := make(chan error, writers)
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			res, err := keyset.Write(keyset.Options{Dir: dir, Count: 2, Append: true, Workers: 1})
			if err != nil {
				errs <- err
				return
			}
			results <- res
		})
	}
	wg.Wait()
	close(results)
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	l, err := csvlist.ReadFile(filepath.Join(dir, "client_public_keys.csv"))
	require.NoError(t, err)
	inCSV := map[string]bool{}
	for _, e := range l.Entries {
		inCSV[e.Key.Fingerprint()] = true
	}
	n := 0
	for res := range results {
		for _, p := range res.Pairs {
			n++
			assert.True(t, inCSV[p.Fingerprint], "%s is in the CSV", p.Private)
			pub, err := keys.ReadPublicKey(p.Public)
			require.NoError(t, err)
			assert.Equal(t, p.Fingerprint, pub.Fingerprint())
			_, err = keys.ReadPrivateKey(p.Private)
			require.NoError(t, err)
		}
	}
	assert.Equal(t, writers*2, n)
	assert.Len(t, l.Entries, writers*2+1)
	idx, err := keyset.Existing(dir, keyset.DefaultPrefix)
	require.NoError(t, err)
	assert.Len(t, idx, writers*2+1)
}

// An interrupted run leaves the folder as it was; one killed outright
// leaves debris that the next run removes and reports.
func TestInterruptedAndKilledRuns(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "keys")
	ctx, cancel := context.WithCancel(context.Background())
	var once sync.Once
	_, err := keyset.Write(keyset.Options{Dir: dir, Count: 200, Context: ctx, Workers: 2,
		Progress: func(done int) {
			if done == 20 {
				once.Do(cancel)
			}
		}})
	require.ErrorContains(t, err, "interrupted")
	ents, _ := os.ReadDir(root)
	assert.Empty(t, ents, "no staging folder, no key folder")

	_, err = keyset.Write(keyset.Options{Dir: dir, Count: 1})
	require.NoError(t, err)
	before := readAll(t, dir)
	ctx, cancel = context.WithCancel(context.Background())
	once = sync.Once{}
	_, err = keyset.Write(keyset.Options{Dir: dir, Count: 200, Append: true, Context: ctx, Workers: 2,
		Progress: func(done int) {
			if done == 20 {
				once.Do(cancel)
			}
		}})
	require.ErrorContains(t, err, "interrupted")
	assert.Equal(t, before, readAll(t, dir), "no temporary file left in the folder")

	// What a SIGKILL leaves: a staging folder of a dead process beside the
	// folder, a temporary file inside it.
	dead := filepath.Join(root, ".keys.tmp-999999999-abc")
	require.NoError(t, os.Mkdir(dead, 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(dead, "client_credentials_1"), []byte("key"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, ".client_credentials_9.tmp-xyz"), []byte("key"), 0o600))
	res, err := keyset.Write(keyset.Options{Dir: dir, Count: 1, Append: true})
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{dead, filepath.Join(dir, ".client_credentials_9.tmp-xyz")}, res.Cleaned)
	_, err = os.Stat(dead)
	assert.ErrorIs(t, err, fs.ErrNotExist)
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
	require.ErrorContains(t, err, "is a regular file, not a folder")
}

// A folder on a read-only file system (procfs here, read-only even for
// root) gets a clear error and nothing is written.
func TestReadOnlyFolder(t *testing.T) {
	self, err := filepath.EvalSymlinks("/proc/self")
	require.NoError(t, err)
	_, err = keyset.Write(keyset.Options{Dir: self, Count: 1})
	require.Error(t, err)
	assert.Regexp(t, `^open /proc/[0-9]+/.*: (permission denied|read-only file system|no such file or directory)`, err.Error())
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
