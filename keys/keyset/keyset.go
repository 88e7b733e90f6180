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

	"github.com/nodekeys/nodekeys/csvlist"
	"github.com/nodekeys/nodekeys/internal/atomicfile"
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
	// Append numbers the new pairs after the highest existing one and
	// rewrites the CSV to hold the old keys and the new.
	Append bool
	// Force replaces files that are in the way.
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
	// Leftovers are temporary files and folders of an earlier run that was
	// killed before it finished; they may hold private keys.
	Leftovers []string `json:"leftovers,omitempty"`
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
}

// Write makes opts.Count key pairs and the allowlist. Before writing
// anything it checks that no file it would write exists (unless Force), so
// a refusal leaves the folder untouched.
func Write(opts Options) (*Result, error) {
	opts.defaults()
	if opts.Count < 0 {
		return nil, fmt.Errorf("keyset: the count of pairs must not be negative")
	}
	if opts.Prefix != filepath.Base(opts.Prefix) || opts.Prefix == "." || opts.Prefix == ".." {
		return nil, fmt.Errorf("keyset: the prefix %q must be a plain file name", opts.Prefix)
	}
	// A new folder is built as a hidden staging folder beside it and renamed
	// into place whole: no one sees a part of it, and each file needs no
	// temporary file of its own.
	staging := ""
	if _, err := os.Lstat(opts.Dir); errors.Is(err, fs.ErrNotExist) {
		parent := filepath.Dir(filepath.Clean(opts.Dir))
		if err := os.MkdirAll(parent, 0o755); err != nil {
			return nil, fmt.Errorf("keyset: %w", err)
		}
		if staging, err = os.MkdirTemp(parent, "."+filepath.Base(opts.Dir)+".tmp-*"); err != nil {
			return nil, fmt.Errorf("keyset: %w", err)
		}
		defer os.RemoveAll(staging) // gone after the rename; else the debris
	} else if err := atomicfile.MkdirPrivate(opts.Dir); err != nil {
		return nil, fmt.Errorf("keyset: %w", err)
	}
	var existing []int
	if staging == "" {
		var err error
		if existing, err = Existing(opts.Dir, opts.Prefix); err != nil {
			return nil, err
		}
	}
	first := 1
	if opts.Append && len(existing) > 0 {
		first = existing[len(existing)-1] + 1
	}
	res := &Result{Dir: opts.Dir, CSV: opts.CSV, Seeded: opts.Generator.Seed != nil}
	for i := range opts.Count {
		p := filepath.Join(opts.Dir, opts.Prefix+"_"+strconv.Itoa(first+i))
		res.Pairs = append(res.Pairs, File{Index: first + i, Private: p, Public: p + ".pub"})
	}
	if opts.ServerKey {
		p := filepath.Join(opts.Dir, ServerName)
		res.Server = &File{Private: p, Public: p + ".pub"}
	}

	// The old allowlist: kept and extended with --append.
	var (
		old []*keys.PublicKey
		err error
	)
	if opts.Append {
		if old, err = previousKeys(opts, existing); err != nil {
			return nil, err
		}
	}
	if !opts.Force {
		in := []string{}
		for _, f := range res.Pairs {
			in = append(in, f.Private, f.Public)
		}
		if res.Server != nil {
			in = append(in, res.Server.Private, res.Server.Public)
		}
		if !opts.Append {
			in = append(in, opts.CSV)
		}
		for _, p := range in {
			if _, err := os.Lstat(p); err == nil {
				return nil, &fs.PathError{Op: "refusing to overwrite", Path: p, Err: fs.ErrExist}
			}
		}
	}

	var (
		wg     sync.WaitGroup
		next   atomic.Int64
		done   atomic.Int64
		mu     sync.Mutex
		errOut error
	)
	pubs := make([]*keys.PublicKey, len(res.Pairs))
	batch := &atomicfile.Batch{Overwrite: opts.Force, Direct: staging != ""}
	// at maps a final path to where it is written now.
	at := func(p string) string {
		if staging == "" {
			return p
		}
		return filepath.Join(staging, filepath.Base(p))
	}
	for range min(opts.Workers, max(len(res.Pairs), 1)) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(res.Pairs) {
					return
				}
				mu.Lock()
				failed := errOut != nil
				mu.Unlock()
				if failed {
					return
				}
				f := &res.Pairs[i]
				pub, err := addPair(batch, at, opts.Generator, f.Index, f)
				if err != nil {
					mu.Lock()
					if errOut == nil {
						errOut = err
					}
					mu.Unlock()
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
		_, errOut = addPair(batch, at, opts.Generator, 0, res.Server)
	}
	if errOut != nil {
		batch.Abort()
		return nil, fmt.Errorf("keyset: %w", unstage(errOut, staging, opts.Dir))
	}
	if err := batch.Commit(); err != nil {
		return nil, fmt.Errorf("keyset: %w", unstage(err, staging, opts.Dir))
	}
	all := append(old, pubs...)
	res.CSVKeys = len(all)
	csvData := csvlist.Marshal(all)
	csvInside := filepath.Dir(opts.CSV) == filepath.Clean(opts.Dir)
	if staging != "" && csvInside {
		if err := atomicfile.Write(at(opts.CSV), csvData, 0o644, false); err != nil {
			return nil, fmt.Errorf("keyset: writing the allowlist: %w", err)
		}
	}
	if staging != "" {
		if err := os.Rename(staging, opts.Dir); err != nil {
			return nil, fmt.Errorf("keyset: moving the new folder into place: %w", err)
		}
	}
	if staging == "" || !csvInside {
		if err := atomicfile.Write(opts.CSV, csvData, 0o644, opts.Force || opts.Append); err != nil {
			return nil, fmt.Errorf("keyset: writing the allowlist: %w", err)
		}
	}
	res.Leftovers = leftovers(opts.Dir)
	return res, nil
}

// unstage makes an error about a file in the staging folder name the file's
// final path in dir: the staging folder is gone when the error is read.
func unstage(err error, staging, dir string) error {
	var pe *fs.PathError
	if staging == "" || !errors.As(err, &pe) {
		return err
	}
	if rel, e := filepath.Rel(staging, pe.Path); e == nil && rel != ".." && !strings.HasPrefix(rel, "../") {
		pe.Path = filepath.Join(dir, rel)
	}
	return err
}

// leftovers finds what a killed run left: staging folders beside dir and
// temporary files in it (see package atomicfile for the names).
func leftovers(dir string) []string {
	clean := filepath.Clean(dir)
	a, _ := filepath.Glob(filepath.Join(filepath.Dir(clean), "."+filepath.Base(clean)+".tmp-*"))
	b, _ := filepath.Glob(filepath.Join(clean, ".*.tmp-*"))
	return append(a, b...)
}

// addPair makes pair index and adds its two files to the batch.
func addPair(batch *atomicfile.Batch, at func(string) string, g keys.Generator, index int, f *File) (*keys.PublicKey, error) {
	p, err := g.Pair(index)
	if err != nil {
		return nil, err
	}
	if err := batch.Add(at(f.Private), p.PrivateFile, 0o600); err != nil {
		return nil, err
	}
	if err := batch.Add(at(f.Public), p.PublicFile, 0o644); err != nil {
		return nil, err
	}
	f.Fingerprint = p.Public.Fingerprint()
	return p.Public, nil
}

// previousKeys returns the keys the appended CSV starts with: those of the
// existing CSV, or, where there is none, those of the existing .pub files.
func previousKeys(opts Options, existing []int) ([]*keys.PublicKey, error) {
	l, err := csvlist.ReadFile(opts.CSV)
	if err == nil {
		return l.Keys(), nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("keyset: the allowlist to append to: %w", err)
	}
	var ks []*keys.PublicKey
	for _, i := range existing {
		p := filepath.Join(opts.Dir, opts.Prefix+"_"+strconv.Itoa(i)+".pub")
		k, err := keys.ReadPublicKey(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("keyset: %w", err)
		}
		ks = append(ks, k)
	}
	return ks, nil
}

// Existing returns the sorted indexes of the PREFIX_N private key files (or
// their .pub files) in dir.
func Existing(dir, prefix string) ([]int, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("keyset: %w", err)
	}
	re := regexp.MustCompile(`^` + regexp.QuoteMeta(prefix) + `_([1-9][0-9]{0,8})(\.pub)?$`)
	seen := map[int]bool{}
	var idx []int
	for _, e := range ents {
		m := re.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		n, _ := strconv.Atoi(m[1])
		if !seen[n] {
			seen[n] = true
			idx = append(idx, n)
		}
	}
	sort.Ints(idx)
	return idx, nil
}
