// Package allowlist reads a Verifier's allowlist from its files, a CSV
// (package csvlist) or a folder of .pub files, and keeps it in step with
// them.
//
// Load reads the files once. NewReloader loads them into a
// verify.Verifier and returns a Reloader, whose Watch reloads them on
// SIGHUP and when they change; a reload that fails keeps the old list.
package allowlist

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/nodekeys/nodekeys/csvlist"
	"github.com/nodekeys/nodekeys/internal/filewatch"
	"github.com/nodekeys/nodekeys/keys"
	"github.com/nodekeys/nodekeys/verify"
)

// Reloader keeps a Verifier's allowlist in step with its files: a CSV
// allowlist, a folder of .pub files, or several of either. It reloads on
// SIGHUP and when a file changes. A reload that fails (a file that does
// not parse, is not a regular file, is too large, or gives an empty list;
// a CSV that ends in a trailing comma; a file that changed while it was
// read) leaves the old allowlist serving; a reload never blocks calls in
// flight, and no lock is held while files are read, so a stuck file system
// cannot stop later reloads from being tried.
//
// A file read while it is being written can end at a comma, or anywhere:
// a trailing comma is refused (Flower's SuperLink fails on it too), and a
// file whose size, time or inode differs after the read from before it is
// read again at the next look, when it has settled.
type Reloader struct {
	v          *verify.Verifier
	paths      []string
	log        *slog.Logger
	allowEmpty bool
	onLoad     func(keys int, err error)
	afterRead  func(name string) // tests: runs between a file's read and its second look

	mu      sync.Mutex // guards last and applied
	last    []fileStamp
	applied uint64 // the generation of the list in force
	gen     uint64 // the generation of the newest reload started
}

// fileStamp tells whether a file changed: editors and atomic writers
// replace it (another inode), others rewrite it (another size or time).
type fileStamp struct {
	name string
	filewatch.Stamp
}

func stampOf(name string, fi os.FileInfo) fileStamp {
	return fileStamp{name: name, Stamp: filewatch.StampOf(fi)}
}

// Option configures a Reloader.
type Option func(*Reloader)

// AlsoFrom adds more allowlist sources, each a CSV file or a folder of
// .pub files; the allowlist is the union of all.
func AlsoFrom(paths ...string) Option {
	return func(r *Reloader) { r.paths = append(r.paths, paths...) }
}

// AllowEmpty accepts an allowlist with no keys, which refuses every node.
// Without it an empty result is a failed reload (a truncated file is more
// likely than an operator removing every node).
func AllowEmpty() Option { return func(r *Reloader) { r.allowEmpty = true } }

// OnLoad calls f after every reload with the number of keys in force and
// the reload's error (nil on success): for metrics.
func OnLoad(f func(keys int, err error)) Option {
	return func(r *Reloader) { r.onLoad = f }
}

// Load reads a CSV allowlist, or a folder of .pub files, and builds a
// verify.Allowlist from it.
func Load(path string) (*verify.Allowlist, error) {
	ks, _, err := readSource(path, nil)
	if err != nil {
		return nil, err
	}
	return verify.NewAllowlist(ks)
}

// maxPubFiles bounds how many .pub files a folder source may hold.
const maxPubFiles = 1_000_000

// readSource reads one source: a CSV file, or every *.pub in a folder. It
// returns the keys and the stamps of the files it read.
func readSource(path string, afterRead func(name string)) ([]*keys.PublicKey, []fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, nil, err
	}
	if !fi.IsDir() {
		stamp := stampOf(path, fi)
		l, err := csvlist.ReadFile(path)
		if err == nil {
			err = unchanged(stamp, afterRead)
		}
		if err == nil {
			err = trailingComma(l)
		}
		if err != nil {
			return nil, []fileStamp{stamp}, err
		}
		return l.Keys(), []fileStamp{stamp}, nil
	}
	names, err := filepath.Glob(filepath.Join(path, "*.pub"))
	if err != nil {
		return nil, nil, err
	}
	if len(names) > maxPubFiles {
		return nil, nil, fmt.Errorf("%s: more than %d .pub files", path, maxPubFiles)
	}
	sort.Strings(names)
	// Every file is looked at before any is parsed, so that a broken one
	// is tried once, not at every look (see Reloader.changed).
	stamps := []fileStamp{stampOf(path, fi)}
	for _, name := range names {
		if fi, err := os.Stat(name); err == nil {
			stamps = append(stamps, stampOf(name, fi))
		}
	}
	ks := make([]*keys.PublicKey, 0, len(names))
	for _, st := range stamps[1:] {
		k, err := keys.ReadPublicKey(st.name)
		if err == nil {
			err = unchanged(st, afterRead)
		}
		if err != nil {
			return nil, stamps, err
		}
		ks = append(ks, k)
	}
	return ks, stamps, nil
}

// unchanged checks that the file of stamp st, just read, still has that
// stamp: one that changed was read while being written, and its content
// may be cut short anywhere. afterRead, if not nil (tests), runs first.
func unchanged(st fileStamp, afterRead func(name string)) error {
	if afterRead != nil {
		afterRead(st.name)
	}
	fi, err := os.Stat(st.name)
	if err != nil {
		return err
	}
	if stampOf(st.name, fi) != st {
		return fmt.Errorf("%s changed while it was read; it is read again once it has settled", st.name)
	}
	return nil
}

// trailingComma returns the warning about a trailing comma of l, if it has
// one, as an error: the list may be one cut short at a comma.
func trailingComma(l *csvlist.List) error {
	for _, w := range l.Warnings {
		if errors.Is(w, csvlist.ErrTrailingComma) {
			return fmt.Errorf("%w (a file cut short, or read while being written, can end so)", w)
		}
	}
	return nil
}

// stamps looks at every file of every source without reading them.
func (r *Reloader) stamps() []fileStamp {
	var out []fileStamp
	for _, p := range r.paths {
		fi, err := os.Stat(p)
		if err != nil {
			out = append(out, fileStamp{name: p, Stamp: filewatch.Stamp{Missing: true}})
			continue
		}
		out = append(out, stampOf(p, fi))
		if !fi.IsDir() {
			continue
		}
		names, _ := filepath.Glob(filepath.Join(p, "*.pub"))
		sort.Strings(names)
		for _, name := range names {
			if fi, err := os.Stat(name); err == nil {
				out = append(out, stampOf(name, fi))
			}
		}
	}
	return out
}

// NewReloader loads path (a CSV file or a folder of .pub files) into v now
// and returns a Reloader for it; log may be nil for slog.Default().
func NewReloader(v *verify.Verifier, path string, log *slog.Logger, opts ...Option) (*Reloader, error) {
	if log == nil {
		log = slog.Default()
	}
	r := &Reloader{v: v, paths: []string{path}, log: log}
	for _, o := range opts {
		o(r)
	}
	if _, _, err := r.Reload(); err != nil {
		return nil, err
	}
	return r, nil
}

var errEmpty = errors.New("the allowlist holds no keys; keeping the old one (an empty allowlist refuses every node)")

// Reload reads the files and, if they parse, swaps the allowlist in,
// returning how many keys were added and removed. On an error the old
// allowlist stays. Reloads may run at once: the list of the newest one to
// start is the one left in force.
func (r *Reloader) Reload() (added, removed int, err error) {
	r.mu.Lock()
	r.gen++
	gen := r.gen
	r.mu.Unlock()

	next, stamps, err := r.read()
	r.mu.Lock()
	defer r.mu.Unlock()
	// Remembered even if a file is broken: Watch then tries it once, not
	// at every look, and again when it changes.
	if gen == r.gen {
		r.last = stamps
	}
	if err == nil && gen < r.applied {
		return 0, 0, nil // a newer reload already put a newer list in force
	}
	if err != nil {
		r.log.Error("allowlist reload failed; the old list stays", "files", r.paths, "error", err)
		if r.onLoad != nil {
			r.onLoad(r.v.Allowlist().Len(), err)
		}
		return 0, 0, err
	}
	added, removed = next.Diff(r.v.Allowlist())
	r.v.SetAllowlist(next)
	r.applied = gen
	r.log.Info("allowlist loaded", "files", r.paths, "keys", next.Len(), "added", added, "removed", removed)
	if r.onLoad != nil {
		r.onLoad(next.Len(), nil)
	}
	return added, removed, nil
}

// read reads every source, with no lock held.
func (r *Reloader) read() (*verify.Allowlist, []fileStamp, error) {
	var all []*keys.PublicKey
	var stamps []fileStamp
	for _, p := range r.paths {
		ks, st, err := readSource(p, r.afterRead)
		stamps = append(stamps, st...)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				stamps = append(stamps, fileStamp{name: p, Stamp: filewatch.Stamp{Missing: true}})
			}
			return nil, stamps, err
		}
		all = append(all, ks...)
	}
	if len(all) == 0 && !r.allowEmpty {
		return nil, stamps, errEmpty
	}
	next, err := verify.NewAllowlist(all)
	return next, stamps, err
}

// changed reports whether any file differs from the ones last read.
func (r *Reloader) changed() bool {
	now := r.stamps()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(now) != len(r.last) {
		return true
	}
	for i := range now {
		if now[i] != r.last[i] {
			return true
		}
	}
	return false
}

// Watch reloads on SIGHUP and when a look every interval finds a file
// changed, until ctx ends. One stat a second (the default, for interval 0)
// costs nothing and sees atomic renames that file watchers can miss.
func (r *Reloader) Watch(ctx context.Context, interval time.Duration) {
	r.watch(ctx, interval, []os.Signal{syscall.SIGHUP})
}

// watch is Watch, reloading on sigs. Tests pass none: a signal cannot
// reach a synctest bubble, whose clock drives the looks.
func (r *Reloader) watch(ctx context.Context, interval time.Duration, sigs []os.Signal) {
	filewatch.Loop(ctx, interval, sigs, r.changed, func() { r.Reload() })
}
