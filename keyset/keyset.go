// Package keyset writes a folder of SuperNode key pairs and the allowlist
// that names them, as Flower's generate_auth_keys.sh does, but without ever
// deleting or silently replacing a key.
//
// For prefix "client_credentials" and N pairs the folder holds
// client_credentials_1 … client_credentials_N (OpenSSH private keys, mode
// 0600), the matching .pub files and client_public_keys.csv, in a folder
// of mode 0700. Every file is written atomically: the key files all land
// together after one sync of the file system, and the CSV after them, so it
// never names a key whose files are not complete.
package keyset

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nodekeys/nodekeys/csvlist"
	"github.com/nodekeys/nodekeys/internal/atomicfile"
	"github.com/nodekeys/nodekeys/internal/safefile"
	"github.com/nodekeys/nodekeys/keys"
)

// Defaults match Flower's generate_auth_keys.sh.
const (
	DefaultDir    = "keys"
	DefaultPrefix = "client_credentials"
	DefaultCSV    = "client_public_keys.csv"
	ServerName    = "server_credentials"
)

// Options say what to write. Zero values take the defaults above.
type Options struct {
	Dir    string
	Prefix string
	// CSV is the allowlist path; a relative path is taken inside Dir.
	CSV   string
	Count int
	// Append numbers the new pairs after the highest existing one and adds
	// their keys to the CSV. The CSV is the allowlist: its keys stay as
	// they are, and a key removed from it is not put back.
	Append bool
	// Force replaces files that are in the way; the CSV then names the new
	// keys only, and Result.Dropped says which keys left it.
	Force bool
	// ServerKey also writes server_credentials and its .pub, the SuperLink
	// pair Flower before 1.15 asked for.
	ServerKey bool
	Generator keys.Generator
	// Workers is how many pairs are made at once; 0 means GOMAXPROCS.
	Workers int
	// Progress, if set, is called after each pair is written, from any
	// goroutine, with the count written so far.
	Progress func(done int)
	// Context, if set, stops the work when it ends (an interrupt): what
	// was written so far is removed, and the folder is as it was.
	Context context.Context
	// LockTimeout is how long to wait for another writer of the folder
	// (default one minute); Waiting, if set, is called once when waiting
	// starts.
	LockTimeout time.Duration
	Waiting     func()
}

// File describes one written key pair.
type File struct {
	Index       int    `json:"index,omitempty"`
	Private     string `json:"private"`
	Public      string `json:"public"`
	Fingerprint string `json:"fingerprint"`
}

// Result lists what Write wrote.
type Result struct {
	Dir    string `json:"dir"`
	CSV    string `json:"csv"`
	Pairs  []File `json:"pairs"`
	Server *File  `json:"server,omitempty"`
	// CSVKeys is how many keys the CSV holds now.
	CSVKeys int  `json:"csv_keys"`
	Seeded  bool `json:"seeded"`
	// Dropped are the fingerprints of keys the CSV held before and does
	// not now (Force writes a new allowlist).
	Dropped []string `json:"dropped,omitempty"`
	// NotInCSV are the .pub files in the folder whose keys the CSV does
	// not name: removed from the allowlist, or never added.
	NotInCSV []string `json:"not_in_csv,omitempty"`
	// Cleaned are the temporary files and folders of earlier runs that
	// were killed before they finished, removed now.
	Cleaned []string `json:"cleaned,omitempty"`
}

func (o *Options) defaults() {
	if o.Dir == "" {
		o.Dir = DefaultDir
	}
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.CSV == "" {
		o.CSV = DefaultCSV
	}
	if !filepath.IsAbs(o.CSV) && filepath.Dir(o.CSV) == "." {
		o.CSV = filepath.Join(o.Dir, o.CSV)
	}
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	if o.Context == nil {
		o.Context = context.Background()
	}
	if o.LockTimeout <= 0 {
		o.LockTimeout = time.Minute
	}
}

// stagingPrefix names the hidden folder a new key folder is built in; the
// process id in it tells a later run whether its maker is still alive.
func stagingPrefix(base string) string {
	return "." + base + ".tmp-" + strconv.Itoa(os.Getpid()) + "-"
}

var stagingRe = regexp.MustCompile(`^\.(.+)\.tmp-([0-9]+)-[0-9a-z]+$`)

// Write makes opts.Count key pairs and the allowlist. Before writing
// anything it checks that no file it would write exists (unless Force), so
// a refusal leaves the folder untouched. Writers of one folder take turns
// (an advisory lock on it), so concurrent runs each add their keys.
func Write(opts Options) (*Result, error) {
	opts.defaults()
	if opts.Count < 0 {
		return nil, errors.New("the count of pairs must not be negative")
	}
	if opts.Prefix != filepath.Base(opts.Prefix) || opts.Prefix == "." || opts.Prefix == ".." {
		return nil, fmt.Errorf("the prefix %q must be a plain file name", opts.Prefix)
	}
	clean := filepath.Clean(opts.Dir)
	parentPath, base := filepath.Dir(clean), filepath.Base(clean)
	if err := os.MkdirAll(parentPath, 0o755); err != nil {
		return nil, err
	}
	parent, err := atomicfile.OpenFolder(parentPath)
	if err != nil {
		return nil, err
	}
	defer parent.Close()
	w := &writer{opts: opts, parent: parent, base: base}
	res, err := w.write()
	if err != nil {
		return nil, err
	}
	return res, nil
}

type writer struct {
	opts   Options
	parent *atomicfile.Dir
	base   string
	dir    *atomicfile.Dir // the key folder, or the staging folder of a new one
	// staging is the name, in parent, of the folder a new key folder is
	// built in and renamed into place whole; "" for an existing folder.
	staging string
}

func (w *writer) write() (*Result, error) {
	opts := w.opts
	// A new folder is made under a lock on its parent, an existing one is
	// written under a lock on itself: either way one writer at a time.
	mode, statErr := w.parent.Lstat(w.base)
	if statErr != nil {
		if err := w.parent.Lock(opts.LockTimeout, opts.Waiting); err != nil {
			return nil, err
		}
		defer w.parent.Unlock()
		mode, statErr = w.parent.Lstat(w.base) // another writer may have made it
	}
	res := &Result{Dir: opts.Dir, CSV: opts.CSV, Seeded: opts.Generator.Seed != nil}
	res.Cleaned = w.cleanStaging()
	switch {
	case statErr != nil:
		name, d, err := w.parent.MkdirTemp(stagingPrefix(w.base))
		if err != nil {
			return nil, err
		}
		w.dir, w.staging = d, name
		defer func() {
			d.Close()
			if w.staging != "" {
				w.parent.RemoveAll(w.staging) // the debris of a failed run
			}
		}()
	case !mode.IsDir():
		return nil, fmt.Errorf("%s: is %s, not a folder", opts.Dir, safefile.Kind(mode))
	default:
		d, err := atomicfile.OpenDir(opts.Dir)
		if err != nil {
			return nil, err
		}
		defer d.Close()
		if err := d.Lock(opts.LockTimeout, opts.Waiting); err != nil {
			return nil, err
		}
		w.dir = d
		res.Cleaned = append(res.Cleaned, w.cleanTemporary()...)
	}

	var existing []int
	if w.staging == "" {
		var err error
		if existing, err = w.existing(); err != nil {
			return nil, err
		}
	}
	first := 1
	if opts.Append && len(existing) > 0 {
		first = existing[len(existing)-1] + 1
	}
	for i := range opts.Count {
		p := filepath.Join(opts.Dir, opts.Prefix+"_"+strconv.Itoa(first+i))
		res.Pairs = append(res.Pairs, File{Index: first + i, Private: p, Public: p + ".pub"})
	}
	if opts.ServerKey {
		p := filepath.Join(opts.Dir, ServerName)
		res.Server = &File{Private: p, Public: p + ".pub"}
	}

	// The allowlist before: extended with Append, compared with Force.
	csvInside := filepath.Dir(opts.CSV) == filepath.Clean(opts.Dir)
	old, oldFound, err := w.readCSV(csvInside)
	if err != nil {
		return nil, fmt.Errorf("the allowlist %s: %w", opts.CSV, err)
	}
	if !opts.Force {
		var in []string
		for _, f := range res.Pairs {
			in = append(in, filepath.Base(f.Private), filepath.Base(f.Public))
		}
		if res.Server != nil {
			in = append(in, ServerName, ServerName+".pub")
		}
		for _, name := range in {
			if w.staging == "" && w.dir.Exists(name) {
				return nil, &fs.PathError{Op: "refusing to overwrite", Path: filepath.Join(opts.Dir, name), Err: fs.ErrExist}
			}
		}
		if !opts.Append && oldFound {
			return nil, &fs.PathError{Op: "refusing to overwrite", Path: opts.CSV, Err: fs.ErrExist}
		}
	}

	pubs, err := w.pairs(res)
	if err != nil {
		return nil, err
	}
	all := pubs
	if opts.Append {
		all = append(old, pubs...)
	}
	res.CSVKeys = len(all)
	if opts.Force {
		res.Dropped = dropped(old, all)
	}
	if err := w.commit(csvlist.Marshal(all), csvInside); err != nil {
		return nil, err
	}
	if opts.Append {
		res.NotInCSV = w.notInCSV(all, existing)
	}
	return res, nil
}

// readCSV reads the allowlist as it is before this run.
func (w *writer) readCSV(inside bool) (ks []*keys.PublicKey, found bool, err error) {
	if w.staging != "" && inside {
		return nil, false, nil // a new folder has no allowlist yet
	}
	l, err := csvlist.ReadFile(w.opts.CSV)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, true, err
	}
	return l.Keys(), true, nil
}

// pairs makes the key pairs and puts their files in place, all or none.
func (w *writer) pairs(res *Result) ([]*keys.PublicKey, error) {
	opts := w.opts
	var (
		wg     sync.WaitGroup
		next   atomic.Int64
		done   atomic.Int64
		mu     sync.Mutex
		errOut error
	)
	pubs := make([]*keys.PublicKey, len(res.Pairs))
	batch := &atomicfile.Batch{Dir: w.dir, Overwrite: opts.Force, Direct: w.staging != ""}
	fail := func(err error) {
		mu.Lock()
		if errOut == nil {
			errOut = err
		}
		mu.Unlock()
	}
	for range min(opts.Workers, max(len(res.Pairs), 1)) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(res.Pairs) {
					return
				}
				if err := opts.Context.Err(); err != nil {
					fail(fmt.Errorf("interrupted: %w", err))
				}
				mu.Lock()
				failed := errOut != nil
				mu.Unlock()
				if failed {
					return
				}
				f := &res.Pairs[i]
				pub, err := addPair(batch, opts.Generator, f.Index, f)
				if err != nil {
					fail(err)
					return
				}
				pubs[i] = pub
				if opts.Progress != nil {
					opts.Progress(int(done.Add(1)))
				}
			}
		})
	}
	wg.Wait()
	if errOut == nil && res.Server != nil {
		// Index 0 is never a client index: the server pair has its own key.
		_, errOut = addPair(batch, opts.Generator, 0, res.Server)
	}
	if errOut == nil {
		errOut = opts.Context.Err()
	}
	if errOut != nil {
		batch.Abort()
		return nil, w.unstage(errOut)
	}
	if err := batch.Commit(); err != nil {
		return nil, w.unstage(err)
	}
	return pubs, nil
}

// commit writes the allowlist and, for a new folder, moves it into place.
func (w *writer) commit(csvData []byte, csvInside bool) error {
	opts := w.opts
	if csvInside {
		if err := w.dir.Write(filepath.Base(opts.CSV), csvData, 0o644, w.staging == "" && (opts.Force || opts.Append)); err != nil {
			return fmt.Errorf("writing the allowlist: %w", w.unstage(err))
		}
	}
	if err := opts.Context.Err(); err != nil {
		return fmt.Errorf("interrupted: %w", err)
	}
	if w.staging != "" {
		if err := w.parent.RenameNoReplace(w.staging, w.base); err != nil {
			return fmt.Errorf("moving the new folder into place: %w", err)
		}
		w.staging = ""
	}
	if !csvInside {
		if err := atomicfile.Write(opts.CSV, csvData, 0o644, opts.Force || opts.Append); err != nil {
			return fmt.Errorf("writing the allowlist: %w", err)
		}
	}
	return nil
}

// unstage makes an error about a file in the staging folder name the file's
// final path: the staging folder is gone when the error is read.
func (w *writer) unstage(err error) error {
	var pe *fs.PathError
	if w.staging == "" || !errors.As(err, &pe) {
		return err
	}
	stagingPath := w.parent.Join(w.staging)
	if rel, e := filepath.Rel(stagingPath, pe.Path); e == nil && rel != ".." && !strings.HasPrefix(rel, "../") {
		pe.Path = filepath.Join(w.opts.Dir, rel)
	}
	return err
}

// cleanStaging removes the staging folders of runs whose process is gone.
func (w *writer) cleanStaging() []string {
	names, _ := w.parent.Names()
	var out []string
	for _, n := range names {
		m := stagingRe.FindStringSubmatch(n)
		if m == nil || m[1] != w.base {
			continue
		}
		pid, _ := strconv.Atoi(m[2])
		if pid == os.Getpid() || processAlive(pid) {
			continue
		}
		if w.parent.RemoveAll(n) == nil {
			out = append(out, w.parent.Join(n))
		}
	}
	return out
}

// cleanTemporary removes the temporary files of writers that died: with
// the folder's lock held, no live writer has any.
func (w *writer) cleanTemporary() []string {
	names, _ := w.dir.Names()
	var out []string
	for _, n := range names {
		if strings.HasPrefix(n, ".") && strings.Contains(n, ".tmp-") {
			if w.dir.Remove(n) == nil {
				out = append(out, w.dir.Join(n))
			}
		}
	}
	return out
}

// dropped returns the fingerprints of old keys not in now.
func dropped(old, now []*keys.PublicKey) []string {
	in := map[string]bool{}
	for _, k := range now {
		in[k.Fingerprint()] = true
	}
	var out []string
	for _, k := range old {
		if fp := k.Fingerprint(); !in[fp] {
			out = append(out, fp)
		}
	}
	return out
}

// notInCSV returns the existing .pub files whose keys the allowlist lacks.
func (w *writer) notInCSV(csv []*keys.PublicKey, existing []int) []string {
	in := map[string]bool{}
	for _, k := range csv {
		in[k.Fingerprint()] = true
	}
	var out []string
	for _, i := range existing {
		p := filepath.Join(w.opts.Dir, w.opts.Prefix+"_"+strconv.Itoa(i)+".pub")
		k, err := keys.ReadPublicKey(p)
		if err != nil {
			continue
		}
		if !in[k.Fingerprint()] {
			out = append(out, p)
		}
	}
	return out
}

// addPair makes pair index and adds its two files to the batch.
func addPair(batch *atomicfile.Batch, g keys.Generator, index int, f *File) (*keys.PublicKey, error) {
	p, err := g.Pair(index)
	if err != nil {
		return nil, err
	}
	if err := batch.Add(filepath.Base(f.Private), p.PrivateFile, 0o600); err != nil {
		return nil, err
	}
	if err := batch.Add(filepath.Base(f.Public), p.PublicFile, 0o644); err != nil {
		return nil, err
	}
	f.Fingerprint = p.Public.Fingerprint()
	return p.Public, nil
}

// existing returns the sorted indexes of the PREFIX_N files in the folder.
func (w *writer) existing() ([]int, error) {
	names, err := w.dir.Names()
	if err != nil {
		return nil, err
	}
	return indexes(names, w.opts.Prefix), nil
}

// Existing returns the sorted indexes of the PREFIX_N private key files (or
// their .pub files) in dir.
func Existing(dir, prefix string) ([]int, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(ents))
	for i, e := range ents {
		names[i] = e.Name()
	}
	return indexes(names, prefix), nil
}

func indexes(names []string, prefix string) []int {
	re := regexp.MustCompile(`^` + regexp.QuoteMeta(prefix) + `_([1-9][0-9]{0,8})(\.pub)?$`)
	seen := map[int]bool{}
	var idx []int
	for _, n := range names {
		m := re.FindStringSubmatch(n)
		if m == nil {
			continue
		}
		i, _ := strconv.Atoi(m[1])
		if !seen[i] {
			seen[i] = true
			idx = append(idx, i)
		}
	}
	sort.Ints(idx)
	return idx
}
