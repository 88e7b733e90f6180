package allowlist_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nodekeys/nodekeys/allowlist"
	"github.com/nodekeys/nodekeys/csvlist"
	"github.com/nodekeys/nodekeys/internal/syncbuf"
	"github.com/nodekeys/nodekeys/keys"
	"github.com/nodekeys/nodekeys/keyset"
	"github.com/nodekeys/nodekeys/verify"
)

// reloadRig is a Reloader over a CSV of some of four keys, which records
// what each reload reported.
type reloadRig struct {
	csv  string
	ks   []*keys.PublicKey
	v    *verify.Verifier
	r    *allowlist.Reloader
	logs *syncbuf.Buffer

	mu    sync.Mutex
	loads []error
}

func newReloadRig(t *testing.T, first ...int) *reloadRig {
	t.Helper()
	res, err := keyset.Write(keyset.Options{Dir: filepath.Join(t.TempDir(), "keys"), Count: 4})
	require.NoError(t, err)
	rr := &reloadRig{csv: res.CSV, logs: &syncbuf.Buffer{}, v: verify.New(nil)}
	for _, p := range res.Pairs {
		k, err := keys.ReadPublicKey(p.Public)
		require.NoError(t, err)
		rr.ks = append(rr.ks, k)
	}
	rr.write(t, first...)
	rr.r, err = allowlist.NewReloader(rr.v, rr.csv, slog.New(slog.NewTextHandler(rr.logs, nil)),
		allowlist.OnLoad(func(_ int, err error) {
			rr.mu.Lock()
			rr.loads = append(rr.loads, err)
			rr.mu.Unlock()
		}))
	require.NoError(t, err)
	return rr
}

// line returns the CSV line of the keys at idx, as keygen writes it, less
// its final newline.
func (rr *reloadRig) line(idx ...int) string {
	var ks []*keys.PublicKey
	for _, i := range idx {
		ks = append(ks, rr.ks[i])
	}
	return strings.TrimSuffix(string(csvlist.Marshal(ks)), "\n")
}

func (rr *reloadRig) write(t *testing.T, idx ...int) {
	t.Helper()
	require.NoError(t, os.WriteFile(rr.csv, []byte(rr.line(idx...)+"\n"), 0o644))
}

// has reports whether the allowlist in force is exactly the keys at idx.
func (rr *reloadRig) has(idx ...int) bool {
	l := rr.v.Allowlist()
	if l.Len() != len(idx) {
		return false
	}
	for _, i := range idx {
		if l.Lookup(rr.ks[i].PEM()) == nil {
			return false
		}
	}
	return true
}

// replace puts a file of data at the CSV's path by a rename, as atomic
// writers (and Kubernetes) do.
func (rr *reloadRig) replace(t *testing.T, data string) {
	t.Helper()
	tmp := rr.csv + ".new"
	require.NoError(t, os.WriteFile(tmp, []byte(data), 0o644))
	require.NoError(t, os.Rename(tmp, rr.csv))
}

// watch runs the reloader's Watch, taking no signal, until the returned
// stop is called. In a synctest bubble, its looks follow the bubble's
// clock.
func (rr *reloadRig) watch(interval time.Duration) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		allowlist.WatchWithoutSignals(ctx, rr.r, interval)
		close(done)
	}()
	return func() { cancel(); <-done }
}

// loadCount returns the number of reloads so far, failed ones included.
func (rr *reloadRig) loadCount() int {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	return len(rr.loads)
}

func (rr *reloadRig) lastLoad() error {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	return rr.loads[len(rr.loads)-1]
}

// A CSV caught at a comma while it was written reads as a shorter list,
// which Flower's SuperLink refuses for its trailing comma: so does the
// reload, keeping the list in force, counting the error and logging where.
func TestReloadRefusesTrailingComma(t *testing.T) {
	rr := newReloadRig(t, 0, 1, 2)
	require.NoError(t, os.WriteFile(rr.csv, []byte(rr.line(0, 1)+",\n"), 0o644))
	_, _, err := rr.r.Reload()
	require.ErrorIs(t, err, csvlist.ErrTrailingComma)
	assert.True(t, rr.has(0, 1, 2), "the last good list stays")
	require.ErrorIs(t, rr.lastLoad(), csvlist.ErrTrailingComma, "counted as a failed reload")
	pos := rr.csv + ":1:" // FILE:LINE:COLUMN
	assert.Contains(t, rr.logs.String(), "allowlist reload failed; the old list stays")
	assert.Contains(t, rr.logs.String(), pos)

	_, err = allowlist.NewReloader(verify.New(nil), rr.csv, slog.New(slog.DiscardHandler))
	require.ErrorIs(t, err, csvlist.ErrTrailingComma, "nor is such a list loaded at start")

	rr.write(t, 0, 1, 3)
	_, _, err = rr.r.Reload()
	require.NoError(t, err)
	assert.True(t, rr.has(0, 1, 3))
}

// A CSV that changes while it is read (an editor or a script writing in
// place) may have been read cut short anywhere, even between two keys, as
// a shorter list that parses. The reload fails and keeps the list in
// force; the next look, once the file has settled, loads it.
func TestReloadRefusesFileChangingWhileRead(t *testing.T) {
	rr := newReloadRig(t, 0, 1, 2)
	// The new list is 0, 1, 3; the writer has written "0,1" when the
	// reload reads it, and the rest right after.
	require.NoError(t, os.WriteFile(rr.csv, []byte(rr.line(0, 1)), 0o644))
	allowlist.SetAfterRead(rr.r, func(name string) {
		f, err := os.OpenFile(name, os.O_APPEND|os.O_WRONLY, 0)
		if assert.NoError(t, err) {
			_, err = f.WriteString("," + rr.line(3) + "\n")
			assert.NoError(t, err)
			assert.NoError(t, f.Close())
		}
	})
	_, _, err := rr.r.Reload()
	require.ErrorContains(t, err, rr.csv+" changed while it was read")
	assert.True(t, rr.has(0, 1, 2), "not the shorter list 0, 1")
	require.Error(t, rr.lastLoad(), "counted as a failed reload")
	assert.Contains(t, rr.logs.String(), "changed while it was read")

	allowlist.SetAfterRead(rr.r, nil)
	synctest.Test(t, func(t *testing.T) {
		stop := rr.watch(time.Second)
		time.Sleep(time.Second)
		synctest.Wait()
		assert.True(t, rr.has(0, 1, 3), "loaded at the next look")
		assert.NoError(t, rr.lastLoad())
		stop()
	})

	// The same holds for a .pub file of a folder source.
	dir := filepath.Join(filepath.Dir(rr.csv), "pubs")
	require.NoError(t, os.Mkdir(dir, 0o700))
	pub := filepath.Join(dir, "a.pub")
	require.NoError(t, os.WriteFile(pub, rr.ks[2].MarshalPublicKey(""), 0o644))
	v := verify.New(nil)
	r, err := allowlist.NewReloader(v, dir, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	allowlist.SetAfterRead(r, func(name string) {
		if name == pub {
			assert.NoError(t, os.WriteFile(pub, rr.ks[3].MarshalPublicKey("node 3"), 0o644))
		}
	})
	_, _, err = r.Reload()
	require.ErrorContains(t, err, pub+" changed while it was read")
	assert.NotNil(t, v.Allowlist().Lookup(rr.ks[2].PEM()), "the last good list stays")
}

// Watch looks once an interval: a changed file is loaded at the first
// look after the change, not before, and once; a file left alone is not
// read again. On synctest's clock: exact, and no wall time spent.
func TestWatchLoadsAtTheNextLook(t *testing.T) {
	rr := newReloadRig(t, 0, 1, 2)
	synctest.Test(t, func(t *testing.T) {
		start := rr.loadCount() // the load at NewReloader
		stop := rr.watch(time.Second)
		defer stop()
		time.Sleep(10 * time.Second)
		synctest.Wait()
		assert.Equal(t, start, rr.loadCount(), "ten looks, no change: nothing read again")

		time.Sleep(500 * time.Millisecond) // half way to the next look
		rr.replace(t, rr.line(0, 1, 3)+"\n")
		time.Sleep(500*time.Millisecond - time.Nanosecond)
		synctest.Wait()
		assert.True(t, rr.has(0, 1, 2), "not before the look")
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		assert.True(t, rr.has(0, 1, 3), "at the look")
		time.Sleep(5 * time.Second)
		synctest.Wait()
		assert.Equal(t, start+1, rr.loadCount(), "loaded once")
		assert.NoError(t, rr.lastLoad())
	})
}

// A broken allowlist is tried once, at the first look after it appears,
// and logged once, not at every look; the fixed file is loaded at the
// first look after it appears.
func TestWatchTriesABrokenFileOnce(t *testing.T) {
	rr := newReloadRig(t, 0, 1, 2)
	good := rr.line(0, 1, 2) + "\n"
	failures := func() int { return strings.Count(rr.logs.String(), "allowlist reload failed") }
	synctest.Test(t, func(t *testing.T) {
		start := rr.loadCount() // the load at NewReloader
		stop := rr.watch(time.Second)
		defer stop()
		time.Sleep(500 * time.Millisecond)
		rr.replace(t, "ssh-rsa AAAA\n")
		time.Sleep(500 * time.Millisecond)
		synctest.Wait()
		assert.Equal(t, 1, failures(), "tried at the next look")
		require.Error(t, rr.lastLoad())
		time.Sleep(20 * time.Second)
		synctest.Wait()
		assert.Equal(t, 1, failures(), "twenty more looks: the same broken file is not tried again")
		assert.Equal(t, start+1, rr.loadCount())
		assert.True(t, rr.has(0, 1, 2), "the last good list stays")

		rr.replace(t, good)
		time.Sleep(time.Second)
		synctest.Wait()
		assert.Equal(t, start+2, rr.loadCount(), "the fixed file is loaded at the next look")
		assert.NoError(t, rr.lastLoad())
		assert.Equal(t, 1, failures())
	})
}
