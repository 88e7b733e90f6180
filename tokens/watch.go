package tokens

import (
	"context"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nodekeys/nodekeys/internal/filewatch"
)

// File is a token file in force: read at start, read again when it
// changes, on SIGHUP and on SIGUSR1. A file that fails to read keeps the
// set last read, and says so in the log.
type File struct {
	path   string
	log    *slog.Logger
	set    atomic.Pointer[Set]
	onLoad func(n int, err error)
	gone   func([]Entry)

	mu   sync.Mutex
	last filewatch.Stamp
}

// Open reads the token file at path; it must exist and parse. onLoad, if
// not nil, is called after each reload with the number of tokens or the
// error.
func Open(path string, log *slog.Logger, onLoad func(n int, err error)) (*File, error) {
	f := &File{path: path, log: log, onLoad: onLoad}
	if err := f.Reload(); err != nil {
		return nil, err
	}
	return f, nil
}

// Set returns the tokens in force.
func (f *File) Set() *Set { return f.set.Load() }

// Reload reads the file now.
func (f *File) Reload() error {
	st := filewatch.Look(f.path)
	entries, err := ReadFile(f.path)
	if f.onLoad != nil {
		f.onLoad(len(entries), err)
	}
	f.mu.Lock()
	f.last = st
	f.mu.Unlock()
	if err != nil {
		if f.set.Load() != nil {
			f.log.Error("token file not reloaded; the tokens last read stay in force", "error", err)
		}
		return err
	}
	next := NewSet(entries)
	old := f.set.Swap(next)
	if old != nil {
		f.log.Info("token file reloaded", "path", f.path, "tokens", len(entries))
		if f.gone != nil {
			if removed := old.minus(next); len(removed) > 0 {
				f.gone(removed)
			}
		}
	}
	return nil
}

// OnRemoved calls fn, after a reload, with the entries the file no longer
// holds: revoked tokens. Set it before Watch.
func (f *File) OnRemoved(fn func(removed []Entry)) { f.gone = fn }

// Watch reloads on SIGHUP, SIGUSR1 (on Unix), and when a look every
// interval finds the file changed, until ctx ends.
func (f *File) Watch(ctx context.Context, interval time.Duration) {
	f.watch(ctx, interval, reloadSignals)
}

// watch is Watch, reloading on sigs. Tests pass none: a signal cannot
// reach a synctest bubble, whose clock drives the looks.
func (f *File) watch(ctx context.Context, interval time.Duration, sigs []os.Signal) {
	filewatch.Loop(ctx, interval, sigs, func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return filewatch.Look(f.path) != f.last
	}, func() { f.Reload() })
}
