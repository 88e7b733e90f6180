package verify

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/nodekeys/nodekeys/csvlist"
)

// Reloader keeps a Verifier's allowlist in step with a CSV file: it reloads
// on SIGHUP and when the file changes. A file that fails to parse leaves
// the old allowlist serving; a reload never blocks calls in flight.
type Reloader struct {
	v    *Verifier
	path string
	log  *slog.Logger

	mu   sync.Mutex
	last fileStamp
}

// fileStamp tells whether a file changed: editors and atomic writers
// replace it (another inode), others rewrite it (another size or time).
type fileStamp struct {
	ino   uint64
	size  int64
	mtime time.Time
}

func stampOf(fi os.FileInfo) fileStamp {
	s := fileStamp{size: fi.Size(), mtime: fi.ModTime()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		s.ino = st.Ino
	}
	return s
}

// LoadAllowlist reads a CSV allowlist and builds an Allowlist from it.
func LoadAllowlist(path string) (*Allowlist, error) {
	l, err := csvlist.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return NewAllowlist(l.Keys())
}

// NewReloader loads path into v now and returns a Reloader for it; log
// may be nil for slog.Default().
func NewReloader(v *Verifier, path string, log *slog.Logger) (*Reloader, error) {
	if log == nil {
		log = slog.Default()
	}
	r := &Reloader{v: v, path: path, log: log}
	if _, _, err := r.Reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// Reload reads the file and, if it parses, swaps it in, returning how many
// keys were added and removed. On an error the old allowlist stays.
func (r *Reloader) Reload() (added, removed int, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fi, err := os.Stat(r.path)
	if err != nil {
		r.log.Error("allowlist reload failed; the old list stays", "file", r.path, "error", err)
		return 0, 0, err
	}
	// Remembered even if the file is broken: Watch then tries it once,
	// not at every look, and again when it changes.
	r.last = stampOf(fi)
	next, err := LoadAllowlist(r.path)
	if err != nil {
		r.log.Error("allowlist reload failed; the old list stays", "file", r.path, "error", err)
		return 0, 0, err
	}
	old := r.v.Allowlist()
	for pem := range next.byPEM {
		if _, ok := old.byPEM[pem]; !ok {
			added++
		}
	}
	for pem := range old.byPEM {
		if _, ok := next.byPEM[pem]; !ok {
			removed++
		}
	}
	r.v.SetAllowlist(next)
	r.log.Info("allowlist loaded", "file", r.path, "keys", next.Len(), "added", added, "removed", removed)
	return added, removed, nil
}

// changed reports whether the file differs from the one last read.
func (r *Reloader) changed() bool {
	fi, err := os.Stat(r.path)
	if err != nil {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return stampOf(fi) != r.last
}

// Watch reloads on SIGHUP and when a look every interval finds the file
// changed, until ctx ends. One stat a second (the default, for interval 0)
// costs nothing and sees atomic renames that file watchers can miss.
func (r *Reloader) Watch(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = time.Second
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			r.Reload()
		case <-t.C:
			if r.changed() {
				r.Reload()
			}
		}
	}
}
