package supernodes

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/nodekeys/nodekeys/csvlist"
	"github.com/nodekeys/nodekeys/internal/atomicfile"
	"github.com/nodekeys/nodekeys/internal/safefile"
	"github.com/nodekeys/nodekeys/keys"
	"github.com/nodekeys/nodekeys/keyset"
)

// ReadWant reads the wanted keys: .pub files, an allowlist CSV, and every
// *.pub in a folder; each may be empty. A key named twice counts once. A
// folder's *.pub whose key the folder's own allowlist (client_public_keys.csv)
// no longer holds is left out: see ReadWanted.
func ReadWant(pubFiles []string, allowlist, dir string) ([]Want, error) {
	w, err := ReadWanted(pubFiles, allowlist, dir)
	if err != nil {
		return nil, err
	}
	return w.Keys, nil
}

// Wanted are the keys ReadWanted read.
type Wanted struct {
	Keys []Want
	// Dropped are the folder's .pub files whose keys its allowlist
	// (Allowlist) does not hold: removed from the federation (nodekeys csv
	// remove) while the file stayed. They are not wanted.
	Dropped []Want
	// Allowlist is the folder's CSV that decided, "" when it has none.
	Allowlist string
}

// ReadWanted is ReadWant, and says which of the folder's keys its
// allowlist left out.
func ReadWanted(pubFiles []string, allowlist, dir string) (*Wanted, error) {
	out := &Wanted{}
	seen := map[string]bool{}
	add := func(k *keys.PublicKey, file string) {
		if !seen[k.Fingerprint()] {
			seen[k.Fingerprint()] = true
			out.Keys = append(out.Keys, Want{Key: k, File: file})
		}
	}
	for _, f := range pubFiles {
		k, err := keys.ReadPublicKey(f)
		if err != nil {
			return nil, err
		}
		add(k, f)
	}
	if allowlist != "" {
		l, err := csvlist.ReadFile(allowlist)
		if err != nil {
			return nil, err
		}
		for _, e := range l.Entries {
			add(e.Key, fmt.Sprintf("%s:%d:%d", allowlist, e.Line, e.Column))
		}
	}
	if dir != "" {
		names, err := filepath.Glob(filepath.Join(dir, "*.pub"))
		if err != nil {
			return nil, err
		}
		if len(names) == 0 {
			if _, err := os.Stat(dir); err != nil {
				return nil, err
			}
		}
		// The folder's allowlist, when it has one, says which of its keys
		// are in the federation.
		var listed map[string]bool
		csvPath := filepath.Join(dir, keyset.DefaultCSV)
		switch l, err := csvlist.ReadFile(csvPath); {
		case err == nil:
			out.Allowlist = csvPath
			listed = map[string]bool{}
			for _, k := range l.Keys() {
				listed[k.Fingerprint()] = true
			}
		case !errors.Is(err, fs.ErrNotExist):
			return nil, err
		}
		sort.Strings(names)
		for _, f := range names {
			if filepath.Base(f) == "server_credentials.pub" {
				continue // the SuperLink's own pair of Flower before 1.15
			}
			k, err := keys.ReadPublicKey(f)
			if err != nil {
				return nil, err
			}
			if listed != nil && !listed[k.Fingerprint()] {
				if !seen[k.Fingerprint()] {
					out.Dropped = append(out.Dropped, Want{Key: k, File: f})
				}
				continue
			}
			add(k, f)
		}
	}
	return out, nil
}

// BurnedFile is the file in a key folder that records the keys a SuperLink
// unregistered: Flower never registers them again, so keygen and apply
// warn before anyone reuses one.
const BurnedFile = "unregistered_keys.txt"

// ReadBurned returns the fingerprints recorded in dir's BurnedFile (none if
// it does not exist).
func ReadBurned(dir string) (map[string]bool, error) {
	b, err := safefile.ReadRegular(filepath.Join(dir, BurnedFile), 64<<20)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]bool{}, nil
	}
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fp, _, _ := strings.Cut(line, " ")
		out[fp] = true
	}
	return out, sc.Err()
}

// RecordBurned appends the unregistered nodes' fingerprints to dir's
// BurnedFile, one line each: "SHA256:... node ID unregistered TIME".
func RecordBurned(dir string, nodes []Node, now time.Time) error {
	if len(nodes) == 0 {
		return nil
	}
	path := filepath.Join(dir, BurnedFile)
	old, err := safefile.ReadRegular(path, 64<<20)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if len(old) == 0 {
		old = []byte("# Keys a SuperLink unregistered: Flower never registers them again.\n")
	}
	var b bytes.Buffer
	b.Write(old)
	for _, n := range nodes {
		fmt.Fprintf(&b, "%s node %d unregistered %s\n", n.Fingerprint, n.ID, now.UTC().Format(time.RFC3339))
	}
	return atomicfile.Write(path, b.Bytes(), 0o644, true)
}
