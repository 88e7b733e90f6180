package tokens_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nodekeys/nodekeys/tokens"
)

func TestNewListRevoke(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "tokens")
	ci, e, err := tokens.New(path, "ci-pipeline", "member")
	require.NoError(t, err)
	assert.Regexp(t, `^nkt_[A-Za-z0-9_-]{43}$`, ci)
	assert.Equal(t, "ci-pipeline", e.Name)
	ops, _, err := tokens.New(path, "ops", "admin")
	require.NoError(t, err)
	_, _, err = tokens.New(path, "ops", "member")
	assert.ErrorContains(t, err, `already has a token named "ops"`)
	_, _, err = tokens.New(path, "bad name", "member")
	assert.Error(t, err)

	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.NotContains(t, string(b), ci[len(tokens.Prefix):], "the token itself is never written")
	assert.NotContains(t, string(b), ops[len(tokens.Prefix):])

	f, err := tokens.Open(path, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	require.NoError(t, err)
	require.Equal(t, 2, f.Set().Len())
	got := f.Set().Lookup(ci)
	require.NotNil(t, got)
	assert.Equal(t, "member", got.Role)
	assert.Equal(t, "admin", f.Set().Lookup(ops).Role)
	for _, wrong := range []string{"", "nkt_", ci + "x", ci[:len(ci)-1], strings.ToUpper(ci), ci[len(tokens.Prefix):]} {
		assert.Nil(t, f.Set().Lookup(wrong), wrong)
	}

	gone, err := tokens.Revoke(path, "ci-pipeline")
	require.NoError(t, err)
	assert.Equal(t, "member", gone.Role)
	_, err = tokens.Revoke(path, "ci-pipeline")
	assert.ErrorIs(t, err, tokens.ErrNoSuchToken)
	require.NoError(t, f.Reload())
	assert.Nil(t, f.Set().Lookup(ci), "revoked")
	assert.NotNil(t, f.Set().Lookup(ops))

	// A broken file keeps the last good set and says where it broke.
	require.NoError(t, os.WriteFile(path, append(b, []byte("sha256:zz x y z\n")...), 0o600))
	err = f.Reload()
	assert.ErrorContains(t, err, path+":4:")
	assert.NotNil(t, f.Set().Lookup(ops))
}

func TestParseErrorsNameTheLine(t *testing.T) {
	t.Parallel()
	h := strings.Repeat("ab", 32)
	for name, tc := range map[string]struct{ in, want string }{
		"fields":    {"sha256:" + h + " a b\n", "f:1: want 4 fields"},
		"hash":      {"# c\n\nsha256:" + h[:62] + " a b 2026-01-01T00:00:00Z\n", "f:3: the first field"},
		"name":      {"sha256:" + h + " -a b 2026-01-01T00:00:00Z\n", "f:1: a name or role"},
		"duplicate": {"sha256:" + h + " a b 2026-01-01T00:00:00Z\nsha256:" + h + " a c 2026-01-01T00:00:00Z\n", `f:2: the name "a" is used twice`},
		"time":      {"sha256:" + h + " a b yesterday\n", "f:1: the time"},
	} {
		_, err := tokens.Parse("f", []byte(tc.in))
		assert.ErrorContains(t, err, tc.want, name)
	}
	_, err := tokens.ReadFile(t.TempDir())
	assert.Error(t, err, "a folder")
}

// Watch looks at the file once an interval: a revocation is in force at
// the first look after it, not a nanosecond before, and reported once; a
// file left alone is not read again. On synctest's clock: exact, and no
// wall time spent.
func TestWatchReloadsAtTheNextLook(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "tokens")
	ci, _, err := tokens.New(path, "ci-pipeline", "member")
	require.NoError(t, err)
	ops, _, err := tokens.New(path, "ops", "admin")
	require.NoError(t, err)
	var loads atomic.Int64
	f, err := tokens.Open(path, slog.New(slog.DiscardHandler), func(int, error) { loads.Add(1) })
	require.NoError(t, err)
	var removed atomic.Value
	f.OnRemoved(func(gone []tokens.Entry) { removed.Store(gone) })

	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			tokens.WatchWithoutSignals(ctx, f, time.Second)
			close(done)
		}()
		defer func() { cancel(); <-done }()

		time.Sleep(10 * time.Second)
		synctest.Wait()
		assert.Equal(t, int64(1), loads.Load(), "ten looks, no change: read at Open only")

		time.Sleep(500 * time.Millisecond) // half way to the next look
		_, err := tokens.Revoke(path, "ci-pipeline")
		require.NoError(t, err)
		time.Sleep(500*time.Millisecond - time.Nanosecond)
		synctest.Wait()
		assert.NotNil(t, f.Set().Lookup(ci), "not before the look")
		assert.Nil(t, removed.Load())
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		assert.Nil(t, f.Set().Lookup(ci), "revoked at the look")
		assert.NotNil(t, f.Set().Lookup(ops))
		gone, _ := removed.Load().([]tokens.Entry)
		require.Len(t, gone, 1)
		assert.Equal(t, "ci-pipeline", gone[0].Name)

		time.Sleep(5 * time.Second)
		synctest.Wait()
		assert.Equal(t, int64(2), loads.Load(), "read once for the change")
	})
}
